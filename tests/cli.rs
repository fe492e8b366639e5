//! `kvcache-cli` against a real server over TCP: one-shot exit codes, piped input, the
//! health check with a password, and the interactive prompt under a pseudo-terminal.

mod common;

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{TestServer, closed_port};

fn cli(port: u16) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kvcache-cli"));
    c.args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .env_remove("KV_CACHE_PASSWORD")
        .env_remove("KV_CACHE_PORT")
        .env("KV_CACHE_CLI_HISTFILE", "");
    c
}

fn run(port: u16, args: &[&str]) -> Output {
    cli(port).args(args).stdin(Stdio::null()).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn piped(port: u16, input: &str, extra_env: &[(&str, &str)]) -> Output {
    let mut c = cli(port);
    for (k, v) in extra_env {
        c.env(k, v);
    }
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Feed stdin from another thread: the replies must be drained while input is written.
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_owned();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out
}

#[test]
fn one_shot_exit_codes() {
    let server = TestServer::default();
    let o = run(server.port, &["PUT", "foo", "bar"]);
    assert_eq!(
        (stdout(&o).as_str(), o.status.code()),
        ("OK stored\n", Some(0))
    );
    let o = run(server.port, &["GET", "foo"]);
    assert_eq!(
        (stdout(&o).as_str(), o.status.code()),
        ("OK bar\n", Some(0))
    );
    let o = run(server.port, &["get", "nope"]);
    assert_eq!(
        (stdout(&o).as_str(), o.status.code()),
        ("ERROR key not found\n", Some(1))
    );
    let o = run(server.port, &["PUT", "k", "v", "-1"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).starts_with("ERROR "), "{}", stdout(&o));
    let o = run(server.port, &["PING"]);
    assert_eq!(
        (stdout(&o).as_str(), o.status.code()),
        ("OK PONG\n", Some(0))
    );
    // QUIT gets no reply: nothing printed, success.
    let o = run(server.port, &["QUIT"]);
    assert_eq!((stdout(&o).as_str(), o.status.code()), ("", Some(0)));
}

#[test]
fn cannot_connect_is_exit_2_with_one_line() {
    let o = run(closed_port(), &["PING"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cannot connect"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn piped_lines_get_replies_in_order() {
    let server = TestServer::default();
    let o = piped(server.port, "PUT a b\nGET a\n", &[]);
    assert_eq!(stdout(&o), "OK stored\nOK b\n");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    // Blank lines are skipped, an ERROR reply makes the exit status 1, and nothing after
    // QUIT is sent.
    let o = piped(
        server.port,
        "PUT x 1\r\n\n  \nGET missing\nEXISTS x\nQUIT\nPUT after quit\n",
        &[],
    );
    assert_eq!(stdout(&o), "OK stored\nERROR key not found\nOK 1\n");
    assert_eq!(o.status.code(), Some(1));
    let o = run(server.port, &["GET", "after"]);
    assert_eq!(stdout(&o), "ERROR key not found\n");

    // A long input is streamed, not deadlocked, and stays in order.
    let mut input = String::new();
    for i in 0..20_000 {
        input.push_str(&format!("PUT key{i} value{i}\nGET key{i}\n"));
    }
    let o = piped(server.port, &input, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let lines: Vec<&str> = std::str::from_utf8(&o.stdout).unwrap().lines().collect();
    assert_eq!(lines.len(), 40_000);
    for i in [0usize, 1, 9_999, 19_999] {
        assert_eq!(lines[2 * i], "OK stored");
        assert_eq!(lines[2 * i + 1], format!("OK value{i}"));
    }
}

#[test]
fn health_check_authenticates_from_the_environment() {
    let server = TestServer::with(|c| c.password = Some("s3cret".into()));
    let health = |env: Option<&str>| {
        let mut c = cli(server.port);
        if let Some(pw) = env {
            c.env("KV_CACHE_PASSWORD", pw);
        }
        c.arg("PING").stdin(Stdio::null()).output().unwrap()
    };
    let o = health(Some("s3cret"));
    assert_eq!(
        (stdout(&o).as_str(), o.status.code()),
        ("OK PONG\n", Some(0))
    );
    let o = health(Some("wrong"));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("invalid password"), "{}", stderr(&o));
    let o = health(None);
    assert_eq!(
        (stdout(&o).as_str(), o.status.code()),
        ("ERROR authentication required\n", Some(1))
    );
    let o = cli(server.port)
        .args(["--password", "s3cret", "PUT", "k", "v"])
        .output()
        .unwrap();
    assert_eq!(
        (stdout(&o).as_str(), o.status.code()),
        ("OK stored\n", Some(0))
    );
}

/// A child process on a pseudo-terminal, with a reader thread collecting its output.
struct Pty {
    child: Child,
    master: std::fs::File,
    output: mpsc::Receiver<Vec<u8>>,
    seen: String,
}

impl Pty {
    fn spawn(mut cmd: Command) -> Pty {
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty writes two new descriptors into the integers we pass; the name,
        // termios and window-size arguments may be null.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "openpty failed");
        // SAFETY: both descriptors were just created by openpty and are owned by nobody else.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave))
            .env("TERM", "xterm");
        // SAFETY: setsid and ioctl(TIOCSCTTY) are async-signal-safe; they make the terminal
        // on stdin the child's controlling terminal, as a login shell would.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        drop(cmd);
        let master = std::fs::File::from(master);
        let mut reader = master.try_clone().unwrap();
        let mut answerer = master.try_clone().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        // Answer the line editor's cursor-position query like a terminal.
                        if buf[..n].windows(4).any(|w| w == b"\x1b[6n") {
                            let _ = answerer.write_all(b"\x1b[1;1R");
                        }
                        if tx.send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Pty {
            child,
            master,
            output: rx,
            seen: String::new(),
        }
    }

    /// Waits until `text` has appeared in the output since the last match.
    fn expect(&mut self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(at) = self.seen.find(text) {
                self.seen.drain(..at + text.len());
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(bytes) => self.seen.push_str(&String::from_utf8_lossy(&bytes)),
                Err(_) => panic!(
                    "timed out waiting for {text:?}; output so far: {:?}",
                    self.seen
                ),
            }
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).unwrap();
    }

    fn wait(&mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the cli did not exit; output: {:?}", self.seen);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything read so far but not yet matched (after waiting for the output to end).
    fn rest(&mut self) -> String {
        while let Ok(bytes) = self.output.recv_timeout(Duration::from_millis(300)) {
            self.seen.push_str(&String::from_utf8_lossy(&bytes));
        }
        self.seen.clone()
    }
}

#[test]
fn interactive_prompt_put_get_quit() {
    let server = TestServer::default();
    let mut pty = Pty::spawn(cli(server.port));
    pty.expect(">>> ");
    pty.send(b"PUT foo bar\r");
    pty.expect("OK stored");
    pty.expect(">>> ");
    pty.send(b"GET foo\r");
    pty.expect("OK bar");
    pty.expect(">>> ");
    pty.send(b"GET nothing\r");
    pty.expect("ERROR key not found");
    pty.expect(">>> ");
    // Up-arrow recalls the previous line from the history.
    pty.send(b"\x1b[A\x1b[A\r");
    pty.expect("OK bar");
    pty.expect(">>> ");
    pty.send(b"QUIT\r");
    pty.expect("Goodbye!");
    assert_eq!(pty.wait(), Some(0));
}

#[test]
fn interactive_ctrl_d_says_goodbye() {
    let server = TestServer::default();
    let mut pty = Pty::spawn(cli(server.port));
    pty.expect(">>> ");
    pty.send(b"\x04");
    pty.expect("Goodbye!");
    assert_eq!(pty.wait(), Some(0));
}

#[test]
fn interactive_server_gone_is_reported_plainly() {
    let mut server = TestServer::default();
    let mut pty = Pty::spawn(cli(server.port));
    pty.expect(">>> ");
    pty.send(b"PING\r");
    pty.expect("OK PONG");
    pty.expect(">>> ");
    server.stop();
    pty.send(b"GET foo\r");
    pty.expect("lost");
    let code = pty.wait();
    let rest = pty.rest();
    assert_eq!(code, Some(2), "{rest}");
    assert!(!rest.contains("panicked"), "{rest}");
}

/// The client's own words: help, exit and quit, in every mode.
#[test]
fn help_exit_and_quit_are_understood() {
    // help needs no server, and lists every command of the line protocol.
    let o = run(closed_port(), &["help"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let help = stdout(&o);
    for (_, syntax, summary) in kvcache::protocol::text::COMMANDS {
        assert!(help.contains(syntax) && help.contains(summary), "{help}");
    }
    assert!(help.contains("exit or quit"), "{help}");

    let server = TestServer::default();
    let o = run(server.port, &["exit"]);
    assert_eq!((stdout(&o).as_str(), o.status.code()), ("", Some(0)));
    // Piped: help prints in its place, exit ends the input like QUIT.
    let o = piped(
        server.port,
        "PUT a b\nhelp\nGET a\nexit\nPUT after exit\n",
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let (before, rest) = out
        .split_once("Commands (KV-Cache line protocol):")
        .unwrap();
    assert_eq!(before, "OK stored\n");
    assert!(rest.ends_with("OK b\n"), "{out}");
    assert_eq!(run(server.port, &["GET", "after"]).status.code(), Some(1));

    let mut pty = Pty::spawn(cli(server.port));
    pty.expect("Type help for the commands");
    pty.expect(">>> ");
    pty.send(b"help\r");
    pty.expect("PUT <key> <value> [ttl]");
    pty.expect("QUIT");
    pty.expect(">>> ");
    pty.send(b"GET a\r");
    pty.expect("OK b");
    pty.expect(">>> ");
    pty.send(b"exit\r");
    pty.expect("Goodbye!");
    assert_eq!(pty.wait(), Some(0));
}

#[test]
fn host_and_port_come_from_the_server_variables() {
    let server = TestServer::default();
    let o = Command::new(env!("CARGO_BIN_EXE_kvcache-cli"))
        .arg("PING")
        .env("KV_CACHE_PORT", server.port.to_string())
        // The server's listen address: to a client it means this machine.
        .env("KV_CACHE_HOST", "0.0.0.0")
        .env_remove("KV_CACHE_PASSWORD")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        (stdout(&o).as_str(), o.status.code()),
        ("OK PONG\n", Some(0)),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_bad_port_is_one_line_naming_the_setting() {
    for (args, env) in [
        (&["--port", "-1", "PING"][..], None),
        (&["PING"][..], Some("abc")),
    ] {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kvcache-cli"));
        c.args(args).stdin(Stdio::null());
        if let Some(v) = env {
            c.env("KV_CACHE_PORT", v);
        }
        let o = c.output().unwrap();
        assert_eq!(o.status.code(), Some(2));
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("kvcache-cli: invalid value") && err.contains("--port"),
            "{err}"
        );
        assert!(err.contains("expected 1 to 65535"), "{err}");
    }
}
