//! The README's `nc` examples, taken from README.md itself and replayed against a real
//! server, so the README cannot drift from what the server says or show an example that
//! hangs. Every code block with an `nc` command is replayed on a fresh server, command by
//! command (`redis-cli` lines in the same block are sent as RESP and shown as redis-cli shows
//! them; `kvcache-cli` lines run the real binary).
//!
//! Debian's OpenBSD `nc` keeps the connection open after its input ends, so an example ends
//! only if the server closes: each must send `QUIT` or use `-N` (close the sending side at the
//! end of input, after which the server answers and closes). The replay copies that
//! behaviour over TCP, and when an `nc` is installed (CI installs netcat-openbsd) runs the
//! very command line too.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::TestServer;

/// How long an example may take before it counts as hanging.
const HANG: Duration = Duration::from_secs(5);

#[derive(Debug)]
enum Step {
    /// `kvcache-server ... &`: the block's server; only `--memcache-port` changes the replay
    /// (the block then runs on a server with a memcache port).
    Server,
    /// `printf '...' | nc [-N | -q1] localhost 7171|11211`
    Printf {
        line: String,
        payload: Vec<u8>,
        half_close: bool,
        /// `-q1`: nc quits a second after its input ends, whether the server closes or not.
        quit_after: bool,
        /// To the memcache port (11211) instead of the main one.
        memcache: bool,
        expect: Vec<String>,
    },
    /// `nc localhost 7171` followed by a typed session: requests and the replies after each.
    Session {
        line: String,
        exchanges: Vec<(String, Vec<String>)>,
    },
    /// `redis-cli -p 7171 ARGS`
    RedisCli {
        line: String,
        args: Vec<String>,
        expect: Vec<String>,
    },
    /// `[target/release/]kvcache-cli ARGS`
    KvcacheCli {
        line: String,
        args: Vec<String>,
        expect: Vec<String>,
    },
}

/// Code blocks of README.md that contain an `nc` command, each as its lines.
fn nc_blocks(readme: &str) -> Vec<Vec<String>> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in readme.lines() {
        if line.trim_start().starts_with("```") {
            match current.take() {
                Some(b) => blocks.push(b),
                None => current = Some(Vec::new()),
            }
        } else if let Some(b) = &mut current {
            b.push(line.trim_start().to_string());
        }
    }
    blocks
        .into_iter()
        .filter(|b| {
            b.iter()
                .any(|l| l.starts_with("$ ") && (l.contains("| nc ") || l.starts_with("$ nc ")))
        })
        .collect()
}

/// The bytes a single-quoted printf format produces.
fn printf_bytes(fmt: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.extend_from_slice(c.to_string().as_bytes());
            continue;
        }
        match chars.next() {
            Some('n') => out.push(b'\n'),
            Some('r') => out.push(b'\r'),
            Some('t') => out.push(b'\t'),
            Some('\\') => out.push(b'\\'),
            other => panic!("unsupported printf escape \\{other:?} in {fmt}"),
        }
    }
    out
}

fn is_reply(line: &str) -> bool {
    line == "OK" || line.starts_with("OK ") || line.starts_with("ERROR ")
}

fn parse_block(block: &[String]) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut i = 0;
    while i < block.len() {
        let line = &block[i];
        let cmd = line
            .strip_prefix("$ ")
            .unwrap_or_else(|| panic!("expected a command, found {line:?} in {block:?}"));
        let mut output = Vec::new();
        i += 1;
        while i < block.len() && !block[i].starts_with("$ ") {
            output.push(block[i].clone());
            i += 1;
        }
        let words: Vec<&str> = cmd.split_whitespace().collect();
        if let Some(rest) = cmd.strip_prefix("printf '") {
            let (fmt, pipe) = rest.split_once('\'').expect("closing quote");
            let nc: Vec<&str> = pipe
                .trim()
                .strip_prefix("| nc")
                .expect("| nc")
                .split_whitespace()
                .collect();
            let memcache = nc[nc.len() - 1] == "11211";
            assert_eq!(nc[nc.len() - 2], "localhost", "{cmd}");
            assert!(memcache || nc[nc.len() - 1] == "7171", "{cmd}");
            let flags = &nc[..nc.len() - 2];
            assert!(
                flags.iter().all(|f| *f == "-N" || *f == "-q1"),
                "only -N and -q1 are used: {cmd}"
            );
            steps.push(Step::Printf {
                line: cmd.to_string(),
                payload: printf_bytes(fmt),
                half_close: flags.contains(&"-N"),
                quit_after: flags.contains(&"-q1"),
                memcache,
                expect: output,
            });
        } else if words == ["nc", "localhost", "7171"] {
            let mut exchanges: Vec<(String, Vec<String>)> = Vec::new();
            for l in output {
                if is_reply(&l) {
                    exchanges
                        .last_mut()
                        .unwrap_or_else(|| panic!("a reply before any request: {l}"))
                        .1
                        .push(l);
                } else {
                    exchanges.push((l, Vec::new()));
                }
            }
            steps.push(Step::Session {
                line: cmd.to_string(),
                exchanges,
            });
        } else if words[..3] == ["redis-cli", "-p", "7171"] {
            steps.push(Step::RedisCli {
                line: cmd.to_string(),
                args: words[3..].iter().map(|w| w.to_string()).collect(),
                expect: output,
            });
        } else if words[0].ends_with("kvcache-server") && words.last() == Some(&"&") {
            assert!(output.is_empty(), "{cmd}");
            steps.push(Step::Server);
        } else if words[0].ends_with("kvcache-cli") {
            steps.push(Step::KvcacheCli {
                line: cmd.to_string(),
                args: words[1..].iter().map(|w| w.to_string()).collect(),
                expect: output,
            });
        } else {
            panic!("a command the README replay does not know, in an nc example: {cmd}");
        }
    }
    steps
}

/// Whether a reply line matches the README's, where STATS figures that vary from run to run
/// (memory, uptime) may differ.
fn same_line(got: &str, want: &str) -> bool {
    if want.starts_with("OK keys=") {
        let (g, w): (Vec<&str>, Vec<&str>) = (got.split(' ').collect(), want.split(' ').collect());
        return g.len() == w.len()
            && g.iter().zip(&w).all(|(g, w)| {
                g == w
                    || ["memory=", "uptime=", "rss=", "mem_fragmentation_ratio="]
                        .iter()
                        .any(|p| {
                            g.starts_with(p)
                                && w.starts_with(p)
                                && g[p.len()..].parse::<f64>().is_ok()
                        })
            });
    }
    got == want
}

fn same_lines(got: &[String], want: &[String]) -> bool {
    got.len() == want.len() && got.iter().zip(want).all(|(g, w)| same_line(g, w))
}

/// Reads until the server closes; `None` if it does not within [`HANG`].
fn read_to_close(s: &mut TcpStream) -> Option<String> {
    s.set_read_timeout(Some(HANG)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + HANG;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(String::from_utf8(out).unwrap()),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) if Instant::now() < deadline => {}
            Err(_) => return None,
        }
        if Instant::now() >= deadline {
            return None;
        }
    }
}

/// Reads until the peer has been silent for a second (what `nc -q1` waits before quitting).
fn read_until_quiet(s: &mut TcpStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return String::from_utf8(out).unwrap(),
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Runs the example's own shell line with the real `nc`, if one is installed.
fn real_nc(line: &str, port: u16, stdin: &[u8]) -> Option<Option<String>> {
    let has_nc = Command::new("sh")
        .args(["-c", "command -v nc"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_nc {
        return None;
    }
    let line = line
        .replace("7171", &port.to_string())
        .replace("11211", &port.to_string());
    let mut child = Command::new("sh")
        .args(["-c", &line])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).unwrap();
    drop(input);
    let deadline = Instant::now() + HANG;
    loop {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            return Some(Some(String::from_utf8(out.stdout).unwrap()));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Some(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn lines(s: &str) -> Vec<String> {
    s.lines().map(String::from).collect()
}

/// Runs one step against the server on `port`; panics with the README line on a mismatch.
fn replay(step: &Step, server: &TestServer) {
    let port = server.port;
    match step {
        Step::Server => {}
        Step::Printf {
            line,
            payload,
            half_close,
            quit_after,
            memcache,
            expect,
        } => {
            let quits = lines(&String::from_utf8_lossy(payload))
                .last()
                .is_some_and(|l| l.trim().eq_ignore_ascii_case("QUIT"));
            assert!(
                *half_close || *quit_after || quits,
                "`{line}` would hang with OpenBSD nc: end it with a QUIT line or use nc -N"
            );
            let addr = if *memcache {
                server
                    .mc_addr
                    .unwrap_or_else(|| panic!("`{line}`: start the server with --memcache-port"))
            } else {
                server.addr
            };
            let port = addr.port();
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(payload).unwrap();
            if *half_close {
                s.shutdown(Shutdown::Write).unwrap();
            }
            let got = if *quit_after && !*half_close {
                read_until_quiet(&mut s)
            } else {
                read_to_close(&mut s)
                    .unwrap_or_else(|| panic!("`{line}` hangs: the server never closed"))
            };
            assert!(
                same_lines(&lines(&got), expect),
                "`{line}` answers\n{got}\nbut the README shows\n{}",
                expect.join("\n")
            );
            if let Some(real) = real_nc(line, port, b"") {
                let real = real.unwrap_or_else(|| panic!("`{line}` hangs with the real nc"));
                assert!(
                    same_lines(&lines(&real), expect),
                    "with the real nc, `{line}` prints\n{real}"
                );
            }
        }
        Step::Session { line, exchanges } => {
            let last = &exchanges.last().expect("a session").0;
            assert!(
                last.eq_ignore_ascii_case("QUIT"),
                "the `{line}` session would hang with OpenBSD nc: end it with QUIT"
            );
            let mut s = TcpStream::connect(server.addr).unwrap();
            let mut reader = std::io::BufReader::new(s.try_clone().unwrap());
            s.set_read_timeout(Some(HANG)).unwrap();
            for (request, replies) in exchanges {
                s.write_all(format!("{request}\n").as_bytes()).unwrap();
                for want in replies {
                    let mut got = String::new();
                    std::io::BufRead::read_line(&mut reader, &mut got)
                        .unwrap_or_else(|e| panic!("no reply to `{request}`: {e}"));
                    let got = got.trim_end_matches('\n');
                    assert!(
                        same_line(got, want),
                        "`{request}` answers `{got}`; the README shows `{want}`"
                    );
                }
            }
            let mut rest = String::new();
            assert_eq!(
                reader.read_to_string(&mut rest).ok(),
                Some(0),
                "the session does not end after QUIT: {rest}"
            );
            // The same session typed into the real nc, on a fresh server.
            let fresh = TestServer::default();
            let typed: String = exchanges.iter().map(|(r, _)| format!("{r}\n")).collect();
            if let Some(real) = real_nc(line, fresh.port, typed.as_bytes()) {
                let real =
                    real.unwrap_or_else(|| panic!("the `{line}` session hangs with the real nc"));
                let want: Vec<String> = exchanges.iter().flat_map(|(_, r)| r.clone()).collect();
                assert!(
                    same_lines(&lines(&real), &want),
                    "with the real nc the session prints\n{real}"
                );
            }
        }
        Step::RedisCli { line, args, expect } => {
            let mut c = server.client();
            let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
            let reply = c.resp(&args);
            // As redis-cli shows a reply on a terminal.
            let shown = if let Some(s) = reply.strip_prefix('+') {
                s.to_string()
            } else if let Some(n) = reply.strip_prefix(':') {
                format!("(integer) {n}")
            } else if let Some(e) = reply.strip_prefix('-') {
                format!("(error) {e}")
            } else if reply == "(nil)" {
                reply
            } else {
                format!("\"{reply}\"")
            };
            assert_eq!(vec![shown], *expect, "`{line}`");
        }
        Step::KvcacheCli { line, args, expect } => {
            let out = Command::new(env!("CARGO_BIN_EXE_kvcache-cli"))
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(args)
                .env_remove("KV_CACHE_PASSWORD")
                .stdin(Stdio::null())
                .output()
                .unwrap();
            let got = lines(&String::from_utf8_lossy(&out.stdout));
            assert_eq!(got, *expect, "`{line}`");
        }
    }
}

#[test]
fn readme_nc_examples_end_and_say_what_the_server_says() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let blocks = nc_blocks(&readme);
    // Quick start (two), Redis clients, Docker: if the README loses its examples, say so.
    assert!(blocks.len() >= 4, "only {} nc examples found", blocks.len());
    let mut steps_run = 0;
    for block in &blocks {
        let memcache = block
            .iter()
            .any(|l| l.contains("kvcache-server") && l.contains("--memcache-port"));
        let server = if memcache {
            TestServer::start_memcache(kvcache::config::Config::default())
        } else {
            TestServer::default()
        };
        for step in parse_block(block) {
            replay(&step, &server);
            steps_run += 1;
        }
    }
    assert!(steps_run >= 8, "{steps_run}");
}

#[test]
fn the_replay_catches_an_example_that_would_hang() {
    // The Redis section's example before the fix: no QUIT, no -N.
    let block = vec![
        "$ printf 'GET greeting\\n' | nc localhost 7171".to_string(),
        "ERROR key not found".to_string(),
    ];
    let steps = parse_block(&block);
    let server = TestServer::default();
    let hung =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| replay(&steps[0], &server)));
    let msg = hung.expect_err("an example without QUIT or -N must fail");
    let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("would hang"), "{msg}");
}
