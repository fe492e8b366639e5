//! Snapshots with the real binary: save on SIGTERM and load at start-up, LRU order and limits
//! across a restart, keys that expire while the server is down, every kind of bad file, a
//! SIGKILL in the middle of a save, failing saves, and the SAVE/BGSAVE/LASTSAVE/INFO replies.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{BinServer, Client, run_server_binary};

/// A scratch directory for one test; removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("kvcache-snaptest-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    fn file(&self) -> PathBuf {
        self.0.join("kv.snap")
    }

    /// Files in the directory whose names start with `prefix`.
    fn named(&self, prefix: &str) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with(prefix))
            .collect();
        v.sort();
        v
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start(file: &Path, extra: &[&str]) -> BinServer {
    let mut args = vec!["--snapshot-file", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    BinServer::start(&args, &[])
}

fn resp(c: &mut Client, args: &[&str]) -> String {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    c.resp(&args)
}

fn info(c: &mut Client) -> HashMap<String, String> {
    resp(c, &["INFO", "persistence"])
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Stores `n` keys `{prefix}{i}` with `value_len`-byte values, 500 per MSET.
fn fill(c: &mut Client, prefix: &str, n: usize, value_len: usize) {
    let value = "v".repeat(value_len);
    let mut i = 0;
    while i < n {
        let mut args = vec!["MSET".to_string()];
        for j in i..(i + 500).min(n) {
            args.push(format!("{prefix}{j}"));
            args.push(value.clone());
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(resp(c, &refs), "+OK");
        i += 500;
    }
}

/// Waits until no save is running.
fn wait_idle(c: &mut Client) {
    let t = Instant::now();
    while info(c)["rdb_bgsave_in_progress"] != "0" {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the save never ended"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn stop(server: &mut BinServer) -> String {
    let (code, _) = server.signal_and_wait(libc::SIGTERM);
    let log = server.stderr.lock().unwrap().clone();
    assert_eq!(code, Some(0), "{log}");
    log
}

fn log_of(server: &BinServer) -> String {
    server.stderr.lock().unwrap().clone()
}

/// The value of `name=` on the log line containing `what`.
fn log_field(log: &str, what: &str, name: &str) -> String {
    let line = log
        .lines()
        .find(|l| l.contains(what))
        .unwrap_or_else(|| panic!("no '{what}' line in {log}"));
    line.split(&format!(" {name}="))
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {name}= in {line}"))
        .to_string()
}

#[test]
fn sigterm_saves_and_a_restart_loads_keys_values_and_ttls() {
    let dir = Dir::new("roundtrip");
    let mut s = start(&dir.file(), &[]);
    let mut c = s.client();
    assert_eq!(resp(&mut c, &["SET", "plain", "value"]), "+OK");
    assert_eq!(resp(&mut c, &["SET", "ttl", "soon", "EX", "1000"]), "+OK");
    assert_eq!(resp(&mut c, &["SET", "bin", "a\r\nb\0c"]), "+OK");
    assert_eq!(s.client().cmd("PUT textkey textvalue 500"), "OK stored");
    let deadline = resp(&mut c, &["PEXPIRETIME", "ttl"]);
    fill(&mut c, "bulk:", 5000, 100);
    drop(c);
    let log = stop(&mut s);
    assert_eq!(log_field(&log, "snapshot saved", "keys"), "5004");
    assert!(dir.file().exists());

    let s = start(&dir.file(), &[]);
    let log = log_of(&s);
    assert_eq!(log_field(&log, "snapshot loaded", "keys_loaded"), "5004");
    assert_eq!(log_field(&log, "snapshot loaded", "skipped_expired"), "0");
    assert!(log.contains("took_ms="), "{log}");
    // Loaded before the server listens.
    assert!(log.find("snapshot loaded").unwrap() < log.find("kvcache-server listening").unwrap());
    let mut c = s.client();
    assert_eq!(resp(&mut c, &["GET", "plain"]), "value");
    assert_eq!(resp(&mut c, &["GET", "bin"]), "a\r\nb\0c");
    assert_eq!(
        resp(&mut c, &["PEXPIRETIME", "ttl"]),
        deadline,
        "same absolute deadline"
    );
    assert_eq!(resp(&mut c, &["TTL", "plain"]), ":-1");
    let ttl: i64 = resp(&mut c, &["TTL", "textkey"])[1..].parse().unwrap();
    assert!((490..=500).contains(&ttl), "{ttl}");
    assert_eq!(resp(&mut c, &["DBSIZE"]), ":5004");
    assert_eq!(resp(&mut c, &["GET", "bulk:4999"]), "v".repeat(100));
    let i = info(&mut c);
    assert_eq!(i["rdb_last_load_keys_loaded"], "5004");
    assert_eq!(i["rdb_last_load_keys_expired"], "0");
}

#[test]
fn lru_order_survives_a_restart_and_picks_the_same_victims() {
    let dir = Dir::new("lru");
    let mut s = start(&dir.file(), &["--shards", "4"]);
    let mut c = s.client();
    for i in 0..100 {
        assert_eq!(resp(&mut c, &["SET", &format!("k{i:02}"), "v"]), "+OK");
    }
    // k00..k09 become the most recently used.
    for i in 0..10 {
        assert_eq!(resp(&mut c, &["GET", &format!("k{i:02}")]), "v");
    }
    drop(c);
    // SIGINT (Ctrl-C) saves like SIGTERM.
    let (code, _) = s.signal_and_wait(libc::SIGINT);
    assert_eq!(code, Some(0), "{}", log_of(&s));
    assert!(log_of(&s).contains("snapshot saved"));

    // Room for 50 keys, and another shard count: the 50 most recently used are kept.
    let s = start(&dir.file(), &["--shards", "8", "--max-keys", "50"]);
    let log = log_of(&s);
    assert_eq!(log_field(&log, "snapshot loaded", "keys_loaded"), "100");
    assert_eq!(
        log_field(&log, "snapshot loaded", "evicted_by_limits"),
        "50"
    );
    let mut c = s.client();
    let present = |c: &mut Client| -> Vec<usize> {
        (0..100)
            .filter(|i| resp(c, &["EXISTS", &format!("k{i:02}")]) == ":1")
            .collect()
    };
    let want: Vec<usize> = (0..10).chain(60..100).collect();
    assert_eq!(present(&mut c), want);
    // New keys evict in the order of before the restart: k60..k69 go first, not k00..k09.
    for i in 0..10 {
        assert_eq!(resp(&mut c, &["SET", &format!("new{i}"), "v"]), "+OK");
    }
    let want: Vec<usize> = (0..10).chain(70..100).collect();
    assert_eq!(present(&mut c), want);
}

#[test]
fn keys_whose_ttl_ran_out_while_down_are_not_loaded() {
    let dir = Dir::new("expiry");
    let mut s = start(&dir.file(), &[]);
    let mut c = s.client();
    for i in 0..20 {
        assert_eq!(
            resp(&mut c, &["SET", &format!("short{i}"), "v", "PX", "1500"]),
            "+OK"
        );
        assert_eq!(
            resp(&mut c, &["SET", &format!("long{i}"), "v", "EX", "3600"]),
            "+OK"
        );
    }
    drop(c);
    stop(&mut s);
    // Stay down until the short deadlines have passed (the library test does this exactly with
    // a manual clock; here the real clock moves).
    let saved = std::fs::metadata(dir.file()).unwrap().modified().unwrap();
    while saved.elapsed().unwrap_or_default() < Duration::from_millis(1600) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let s = start(&dir.file(), &[]);
    let log = log_of(&s);
    assert_eq!(log_field(&log, "snapshot loaded", "keys_loaded"), "20");
    assert_eq!(log_field(&log, "snapshot loaded", "skipped_expired"), "20");
    let mut c = s.client();
    assert_eq!(resp(&mut c, &["EXISTS", "short3"]), ":0");
    assert_eq!(resp(&mut c, &["EXISTS", "long3"]), ":1");
    assert_eq!(resp(&mut c, &["DBSIZE"]), ":20");
}

/// A valid snapshot of a few keys, made by the real server.
fn good_snapshot(dir: &Dir) -> Vec<u8> {
    let mut s = start(&dir.file(), &[]);
    let mut c = s.client();
    fill(&mut c, "k", 2000, 50);
    drop(c);
    stop(&mut s);
    std::fs::read(dir.file()).unwrap()
}

#[test]
fn bad_files_are_moved_aside_with_one_clear_line_and_the_server_starts_empty() {
    let dir = Dir::new("bad");
    let good = good_snapshot(&dir);
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x04;
    let mut version = good.clone();
    version[8] = 7;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated",
            good[..good.len() * 2 / 3].to_vec(),
            "truncated",
        ),
        (
            "cut before the end marker",
            good[..good.len() - 3].to_vec(),
            "truncated",
        ),
        (
            "corrupted",
            flipped,
            "corrupted: checksum mismatch in the block",
        ),
        ("wrong version", version, "format version 7"),
        (
            "foreign (an RDB file)",
            b"REDIS0011\xfa\x09redis-ver\x057.0.15".to_vec(),
            "not a kvcache snapshot",
        ),
        (
            "foreign (text)",
            b"hello, world\n".to_vec(),
            "not a kvcache snapshot",
        ),
        ("empty", Vec::new(), "not a kvcache snapshot"),
    ];
    let path = dir.file();
    for (name, bytes, problem) in cases {
        for old in dir.named("kv.snap.corrupt-") {
            std::fs::remove_file(old).unwrap();
        }
        std::fs::write(&path, &bytes).unwrap();

        // --snapshot-strict refuses to start and leaves the file alone.
        let (code, _, err) = run_server_binary(
            &[
                "--port",
                "0",
                "--host",
                "127.0.0.1",
                "--snapshot-file",
                path.to_str().unwrap(),
                "--snapshot-strict",
            ],
            &[],
        );
        assert_eq!(code, Some(2), "{name}: {err}");
        assert!(
            err.contains(path.to_str().unwrap()) && err.contains(problem),
            "{name}: {err}"
        );
        assert!(err.contains("--snapshot-strict"), "{name}: {err}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "{name}: strict leaves the file"
        );

        // Otherwise: one error line naming the file and the problem, the file moved aside
        // intact, an empty cache that serves.
        let mut s = start(&path, &[]);
        let log = log_of(&s);
        let lines: Vec<&str> = log.lines().filter(|l| l.contains("unusable")).collect();
        assert_eq!(lines.len(), 1, "{name}: {log}");
        assert!(lines[0].contains("ERROR"), "{name}: {}", lines[0]);
        assert!(
            lines[0].contains(path.to_str().unwrap()) && lines[0].contains(problem),
            "{name}: {}",
            lines[0]
        );
        let moved = dir.named("kv.snap.corrupt-");
        assert_eq!(moved.len(), 1, "{name}");
        assert!(
            lines[0].contains(moved[0].to_str().unwrap()),
            "{name}: {}",
            lines[0]
        );
        assert_eq!(
            std::fs::read(&moved[0]).unwrap(),
            bytes,
            "{name}: moved intact"
        );
        assert!(!path.exists(), "{name}");
        let mut c = s.client();
        assert_eq!(resp(&mut c, &["DBSIZE"]), ":0", "{name}");
        assert_eq!(resp(&mut c, &["SET", "after", "1"]), "+OK");
        drop(c);
        stop(&mut s);
        // The next save writes a fresh file; the moved one is never touched.
        assert!(path.exists());
        assert_eq!(std::fs::read(&moved[0]).unwrap(), bytes, "{name}");
    }
}

#[test]
fn sigkill_during_a_big_save_leaves_the_previous_snapshot_loadable() {
    let dir = Dir::new("sigkill");
    let path = dir.file();
    let tmp = dir.0.join("kv.snap.tmp");
    let mut s = start(&path, &[]);
    let mut c = s.client();
    fill(&mut c, "old", 1000, 100);
    assert_eq!(s.client().cmd("SAVE"), "OK saved 1000 keys");
    let previous = std::fs::read(&path).unwrap();
    // Enough data that the save takes a while.
    fill(&mut c, "new", 200_000, 400);
    assert_eq!(resp(&mut c, &["BGSAVE"]), "+Background saving started");
    // Kill as soon as the save has started writing.
    let t = Instant::now();
    while !tmp.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the save never created its file"
        );
        std::hint::spin_loop();
    }
    unsafe {
        libc::kill(s.child.id() as i32, libc::SIGKILL);
    }
    let _ = s.child.wait();
    assert!(
        tmp.exists(),
        "killed mid-save: the unfinished file is still there"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        previous,
        "the previous snapshot is untouched"
    );
    drop(s);

    let s = start(&path, &[]);
    let log = log_of(&s);
    assert!(
        log.contains("removed the unfinished file of an interrupted save"),
        "{log}"
    );
    assert_eq!(log_field(&log, "snapshot loaded", "keys_loaded"), "1000");
    assert!(!tmp.exists());
    let mut c = s.client();
    assert_eq!(resp(&mut c, &["DBSIZE"]), ":1000");
    assert_eq!(resp(&mut c, &["GET", "old999"]), "v".repeat(100));
}

#[test]
fn save_replies_on_both_protocols() {
    let dir = Dir::new("replies");
    let s = start(&dir.file(), &[]);
    let mut text = s.client();
    let mut c = s.client();
    assert_eq!(text.cmd("PUT a 1"), "OK stored");
    assert_eq!(text.cmd("SAVE"), "OK saved 1 keys");
    assert_eq!(
        text.cmd("SAVE extra"),
        "ERROR wrong number of arguments for 'SAVE' (got 1 argument; usage: SAVE)"
    );
    assert_eq!(resp(&mut c, &["SAVE"]), "+OK");
    let last: u64 = resp(&mut c, &["LASTSAVE"])[1..].parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(last <= now && last + 60 >= now, "{last} vs {now}");
    assert_eq!(
        resp(&mut c, &["BGSAVE", "SCHEDULE"]),
        "+Background saving started"
    );
    assert_eq!(resp(&mut c, &["BGSAVE", "NOW"]), "-ERR syntax error");
    wait_idle(&mut c);
    // A request pipelined behind SAVE is answered after it.
    c.send(
        &[
            common::resp_frame(&[b"SAVE"]),
            common::resp_frame(&[b"GET", b"a"]),
        ]
        .concat(),
    );
    assert_eq!(c.resp_value(), "+OK");
    assert_eq!(c.resp_value(), "1");

    // While a save runs, another SAVE or BGSAVE gets Redis's error.
    fill(&mut c, "k", 200_000, 200);
    c.send(
        &[
            common::resp_frame(&[b"BGSAVE"]),
            common::resp_frame(&[b"BGSAVE"]),
            common::resp_frame(&[b"SAVE"]),
        ]
        .concat(),
    );
    assert_eq!(c.resp_value(), "+Background saving started");
    assert_eq!(c.resp_value(), "-ERR Background save already in progress");
    assert_eq!(c.resp_value(), "-ERR Background save already in progress");
    assert_eq!(
        text.cmd("SAVE"),
        "ERROR Background save already in progress"
    );
    // Other clients are served meanwhile.
    assert_eq!(text.cmd("GET a"), "OK 1");
    wait_idle(&mut c);
    assert_eq!(text.cmd("SAVE"), "OK saved 200001 keys");

    // With snapshots off, SAVE says how to turn them on.
    let off = BinServer::start(&[], &[]);
    let mut c = off.client();
    assert!(
        resp(&mut c, &["SAVE"])
            .starts_with("-ERR snapshots are off: start kvcache-server with --snapshot-file")
    );
    assert!(resp(&mut c, &["BGSAVE"]).starts_with("-ERR snapshots are off"));
    assert!(
        off.client()
            .cmd("SAVE")
            .starts_with("ERROR snapshots are off")
    );
}

#[test]
fn info_persistence_uses_redis_field_names() {
    let dir = Dir::new("info");
    let s = start(&dir.file(), &[]);
    let mut c = s.client();
    let i = info(&mut c);
    for field in [
        "loading",
        "rdb_changes_since_last_save",
        "rdb_bgsave_in_progress",
        "rdb_last_save_time",
        "rdb_last_bgsave_status",
        "rdb_last_bgsave_time_sec",
        "rdb_current_bgsave_time_sec",
        "rdb_saves",
        "aof_enabled",
    ] {
        assert!(i.contains_key(field), "{field} missing: {i:?}");
    }
    assert_eq!(i["rdb_changes_since_last_save"], "0");
    assert_eq!(i["rdb_last_bgsave_status"], "ok");
    assert_eq!(i["rdb_last_bgsave_time_sec"], "-1");
    assert_eq!(i["rdb_saves"], "0");
    assert_eq!(i["kvcache_snapshot_file"], dir.file().to_str().unwrap());
    assert_eq!(resp(&mut c, &["SET", "a", "1"]), "+OK");
    assert_eq!(resp(&mut c, &["MSET", "b", "1", "c", "2"]), "+OK");
    assert_eq!(resp(&mut c, &["GET", "a"]), "1");
    assert_eq!(info(&mut c)["rdb_changes_since_last_save"], "3");
    assert_eq!(resp(&mut c, &["SAVE"]), "+OK");
    let i = info(&mut c);
    assert_eq!(i["rdb_changes_since_last_save"], "0");
    assert_eq!(i["rdb_saves"], "1");
    assert_eq!(i["rdb_last_bgsave_time_sec"], "0");
    assert_eq!(i["kvcache_last_save_keys"], "3");
    assert_eq!(
        i["kvcache_last_save_bytes"],
        std::fs::metadata(dir.file()).unwrap().len().to_string()
    );
    // The section is part of the default INFO, between Memory and Stats as in Redis.
    let all = resp(&mut c, &["INFO"]);
    let (m, p, st) = (
        all.find("# Memory").unwrap(),
        all.find("# Persistence").unwrap(),
        all.find("# Stats").unwrap(),
    );
    assert!(m < p && p < st);
    // CONFIG GET answers the names Redis tools ask for.
    assert_eq!(
        resp(&mut c, &["CONFIG", "GET", "dbfilename"]),
        "[dbfilename, kv.snap]"
    );
}

#[test]
fn periodic_saves_happen_only_after_writes() {
    let dir = Dir::new("periodic");
    let s = start(&dir.file(), &["--snapshot-interval", "1"]);
    let mut c = s.client();
    assert_eq!(resp(&mut c, &["SET", "a", "1"]), "+OK");
    let t = Instant::now();
    while info(&mut c)["rdb_saves"] == "0" {
        assert!(t.elapsed() < Duration::from_secs(20), "no periodic save");
        std::thread::sleep(Duration::from_millis(50));
    }
    let back = kvcache::store::Store::default();
    assert_eq!(
        kvcache::snapshot::load(&back, &dir.file()).unwrap().loaded,
        1
    );
    assert_eq!(info(&mut c)["rdb_changes_since_last_save"], "0");
    assert_eq!(resp(&mut c, &["CONFIG", "GET", "save"]), "[save, 1 1]");
}

#[test]
fn a_failing_save_answers_an_error_keeps_the_old_snapshot_and_keeps_serving() {
    let dir = Dir::new("fail");
    let path = dir.file();
    let mut s = start(&path, &[]);
    let mut c = s.client();
    let mut text = s.client();
    assert_eq!(resp(&mut c, &["SET", "a", "1"]), "+OK");
    assert_eq!(resp(&mut c, &["SAVE"]), "+OK");
    let previous = std::fs::read(&path).unwrap();
    assert_eq!(resp(&mut c, &["SET", "b", "2"]), "+OK");
    // Something in the way of the temporary file (works as root, where permissions do not).
    std::fs::create_dir(dir.0.join("kv.snap.tmp")).unwrap();
    let reply = resp(&mut c, &["SAVE"]);
    assert!(
        reply.starts_with("-ERR snapshot save failed: cannot create"),
        "{reply}"
    );
    assert!(reply.contains("kv.snap.tmp"), "{reply}");
    let reply = text.cmd("SAVE");
    assert!(
        reply.starts_with("ERROR snapshot save failed: cannot create"),
        "{reply}"
    );
    assert_eq!(resp(&mut c, &["BGSAVE"]), "+Background saving started");
    wait_idle(&mut c);
    let i = info(&mut c);
    assert_eq!(i["rdb_last_bgsave_status"], "err");
    assert_eq!(i["kvcache_save_failures"], "3");
    assert!(
        i["kvcache_last_save_error"].contains("cannot create"),
        "{i:?}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        previous,
        "old snapshot intact"
    );
    assert_eq!(resp(&mut c, &["GET", "b"]), "2", "still serving");
    assert!(log_of(&s).contains("snapshot save failed: cannot create"));
    // The shutdown save fails too: exit 1, the old snapshot stays.
    drop((c, text));
    let (code, _) = s.signal_and_wait(libc::SIGTERM);
    assert_eq!(code, Some(1), "{}", log_of(&s));
    assert!(log_of(&s).contains("exiting without a fresh snapshot"));
    assert_eq!(std::fs::read(&path).unwrap(), previous);
    // Once the obstacle is gone, saves work again.
    std::fs::remove_dir(dir.0.join("kv.snap.tmp")).unwrap();
    let s = start(&path, &[]);
    let mut c = s.client();
    assert_eq!(resp(&mut c, &["GET", "a"]), "1");
    assert_eq!(resp(&mut c, &["SAVE"]), "+OK");
    assert_eq!(info(&mut c)["rdb_last_bgsave_status"], "ok");
}

/// A tmpfs of 1 MiB as the snapshot directory: a real full disk. Needs mount privileges
/// (root in CI); elsewhere the test says so and does nothing.
#[test]
fn a_full_disk_fails_the_save_and_keeps_the_old_snapshot() {
    let dir = Dir::new("full");
    let mnt = dir.0.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let ok = std::process::Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=1m",
            "tmpfs",
            mnt.to_str().unwrap(),
        ])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: cannot mount a tmpfs here (not root?); the CI suite runs as root");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    let path = mnt.join("kv.snap");
    let s = start(&path, &[]);
    let mut c = s.client();
    fill(&mut c, "small", 100, 10);
    assert_eq!(resp(&mut c, &["SAVE"]), "+OK");
    let previous = std::fs::read(&path).unwrap();
    // Incompressible values well beyond 1 MiB.
    let mut x = 1u64;
    for i in 0..3000 {
        let v: String = (0..1000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (b'!' + (x % 90) as u8) as char
            })
            .collect();
        assert_eq!(resp(&mut c, &["SET", &format!("big{i}"), &v]), "+OK");
    }
    let reply = resp(&mut c, &["SAVE"]);
    assert!(
        reply.starts_with("-ERR snapshot save failed: cannot write"),
        "{reply}"
    );
    assert!(reply.contains("No space left on device"), "{reply}");
    assert_eq!(std::fs::read(&path).unwrap(), previous);
    assert!(
        !mnt.join("kv.snap.tmp").exists(),
        "the partial file is removed"
    );
    assert_eq!(resp(&mut c, &["DBSIZE"]), ":3100", "still serving");
}

#[test]
fn prometheus_shows_snapshot_health() {
    use std::io::{Read, Write};
    let dir = Dir::new("metrics");
    let mport = common::free_port();
    let s = start(&dir.file(), &["--metrics-port", &mport.to_string()]);
    let scrape = || {
        let mut t = std::net::TcpStream::connect(("127.0.0.1", mport)).unwrap();
        write!(t, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        let mut out = String::new();
        t.read_to_string(&mut out).unwrap();
        out
    };
    let mut c = s.client();
    assert_eq!(resp(&mut c, &["SET", "a", "1"]), "+OK");
    let m = scrape();
    for line in [
        "kvcache_snapshot_last_save_ok 1",
        "kvcache_snapshot_saves_total 0",
        "kvcache_snapshot_changes_since_last_save 1",
        "# TYPE kvcache_snapshot_save_failures_total counter",
    ] {
        assert!(m.contains(line), "missing {line:?} in {m}");
    }
    std::fs::create_dir(dir.0.join("kv.snap.tmp")).unwrap();
    assert!(resp(&mut c, &["SAVE"]).starts_with("-ERR snapshot save failed"));
    let m = scrape();
    assert!(m.contains("kvcache_snapshot_last_save_ok 0"), "{m}");
    assert!(m.contains("kvcache_snapshot_save_failures_total 1"), "{m}");
    std::fs::remove_dir(dir.0.join("kv.snap.tmp")).unwrap();
    assert_eq!(resp(&mut c, &["SAVE"]), "+OK");
    let m = scrape();
    assert!(m.contains("kvcache_snapshot_last_save_ok 1"), "{m}");
    assert!(m.contains("kvcache_snapshot_saves_total 1"), "{m}");
    assert!(
        m.contains("kvcache_snapshot_changes_since_last_save 0"),
        "{m}"
    );
}
