//! Settings as a user gives them: flags, KV_CACHE_* variables and a TOML file, with
//! flags > environment > file > defaults, and one clear line for a bad value.

mod common;

use common::{BinServer, TempFile, run_server_binary, stats};

#[test]
fn help_documents_every_setting() {
    let (code, out, _) = run_server_binary(&["--help"], &[]);
    assert_eq!(code, Some(0));
    for flag in [
        "--host",
        "--port",
        "--max-connections",
        "--max-line",
        "--idle-timeout",
        "--request-timeout",
        "--max-keys",
        "--max-memory",
        "--shards",
        "--threads",
        "--max-key-size",
        "--max-value-size",
        "--max-args",
        "--max-batch",
        "--output-limit",
        "--metrics-port",
        "--password",
        "--password-file",
        "--debug",
        "--log-level",
        "--config",
    ] {
        assert!(out.contains(flag), "--help lacks {flag}");
        let env = format!(
            "KV_CACHE_{}",
            flag.trim_start_matches("--")
                .replace('-', "_")
                .to_uppercase()
        );
        assert!(out.contains(&env), "--help lacks {env}");
    }
    assert!(out.contains("default: 7171"));
}

#[test]
fn bad_values_stop_startup_with_one_line_naming_the_setting() {
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            &["--port", "http"],
            &[],
            "invalid port (--port / KV_CACHE_PORT): 'http'",
        ),
        (&["--port", "65536"], &[], "invalid port"),
        (
            &["--port", "-1"],
            &[],
            "invalid port (--port / KV_CACHE_PORT): '-1' is out of range (expected 0 to 65535)",
        ),
        (
            &["--prot", "7172"],
            &[],
            "unexpected argument '--prot' found; a similar argument exists: '--port' (see --help)",
        ),
        (&["--max-memory", "64mebibytes"], &[], "invalid max_memory"),
        (&[], &[("KV_CACHE_PORT", "-1")], "invalid port"),
        (
            &["--max-memory", "lots"],
            &[],
            "invalid max_memory (--max-memory / KV_CACHE_MAX_MEMORY): 'lots'",
        ),
        (&[], &[("KV_CACHE_MAX_KEYS", "ten")], "invalid max_keys"),
        (&["--max-connections", "0"], &[], "invalid max_connections"),
        (&["--idle-timeout", "1.5"], &[], "invalid idle_timeout"),
        (&["--shards", "6"], &[], "invalid shards"),
        (&["--threads", "1025"], &[], "invalid threads"),
        (&["--runtime", "fibers"], &[], "invalid runtime"),
        (&[], &[("KV_CACHE_THREADS", "two")], "invalid threads"),
        (&[], &[("KV_CACHE_DEBUG", "maybe")], "invalid debug"),
        (&["--log-level", "chatty"], &[], "invalid log_level"),
        (&["--config", "/nonexistent/kv.toml"], &[], "invalid config"),
    ];
    for (args, envs, expected) in cases {
        let (code, _, err) = run_server_binary(args, envs);
        assert_eq!(code, Some(2), "{args:?} {envs:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.starts_with("kvcache-server: "), "{err}");
        assert!(err.contains(expected), "{args:?} {envs:?}: {err}");
    }
}

fn max_keys_of(s: &BinServer) -> u64 {
    // Fill past a small limit and count what stays.
    let mut c = s.client();
    for i in 0..50 {
        assert_eq!(c.cmd(&format!("PUT k{i} v")), "OK stored");
    }
    stats(&mut c)["keys"]
}

#[test]
fn precedence_is_flags_then_env_then_file_then_defaults() {
    let file = TempFile::new(
        "settings",
        "kvcache.toml",
        "max_keys = 10\nmax-memory = \"64mb\"\n",
    );
    let f = file.as_str();
    assert_eq!(
        max_keys_of(&BinServer::start(&[], &[])),
        50,
        "default: no key limit"
    );
    assert_eq!(
        max_keys_of(&BinServer::start(&["--config", f], &[])),
        10,
        "file"
    );
    assert_eq!(
        max_keys_of(&BinServer::start(
            &["--config", f],
            &[("KV_CACHE_MAX_KEYS", "20")]
        )),
        20,
        "env beats file"
    );
    assert_eq!(
        max_keys_of(&BinServer::start(
            &["--config", f, "--max-keys", "30"],
            &[("KV_CACHE_MAX_KEYS", "20")]
        )),
        30,
        "flag beats env"
    );
    assert_eq!(
        max_keys_of(&BinServer::start(&[], &[("KV_CACHE_CONFIG", f)])),
        10,
        "the file can come from the environment"
    );
    std::fs::write(&file.path, "max-keys = \"many\"\n").unwrap();
    let (code, _, err) = run_server_binary(&["--config", f], &[]);
    assert_eq!(code, Some(2));
    assert_eq!(
        err.trim_end(),
        format!(
            "kvcache-server: invalid max_keys (key 'max-keys' in config file {f}): 'many' is not a whole number (expected 0 to 1099511627520)"
        )
    );
}

#[test]
fn sizes_take_every_common_unit_from_flags_env_and_file() {
    let file = TempFile::new("sizes", "kvcache.toml", "max_memory = \"96MiB\"\n");
    let maxmemory = |s: &BinServer| s.client().resp(&[b"CONFIG", b"GET", b"maxmemory"]);
    let expect = |bytes: u64| format!("[maxmemory, {bytes}]");
    let s = BinServer::start(&["--max-memory", "64mib"], &[]);
    assert_eq!(maxmemory(&s), expect(64 << 20));
    let s = BinServer::start(&[], &[("KV_CACHE_MAX_MEMORY", "32MB")]);
    assert_eq!(maxmemory(&s), expect(32 << 20));
    let s = BinServer::start(&[], &[("KV_CACHE_MAX_MEMORY", "2g")]);
    assert_eq!(maxmemory(&s), expect(2_000_000_000));
    let s = BinServer::start(&["--config", file.as_str()], &[]);
    assert_eq!(maxmemory(&s), expect(96 << 20));
}

#[test]
fn worker_threads_from_flag_env_and_file() {
    let file = TempFile::new("threads", "kvcache.toml", "threads = 3\n");
    let cpus = std::thread::available_parallelism().unwrap().to_string();
    for (args, envs, expected) in [
        (&[][..], &[][..], cpus.as_str()),
        (&["--threads", "1"][..], &[][..], "1"),
        (&[][..], &[("KV_CACHE_THREADS", "5")][..], "5"),
        (&["--config", file.as_str()][..], &[][..], "3"),
    ] {
        let s = BinServer::start(args, envs);
        assert_eq!(s.startup_field("threads"), expected, "{args:?} {envs:?}");
        let mut c = s.client();
        assert_eq!(c.cmd("PUT k v"), "OK stored");
        assert_eq!(c.cmd("GET k"), "OK v");
        assert_eq!(
            s.client().resp(&[b"CONFIG", b"GET", b"kvcache-threads"]),
            format!(
                "[kvcache-threads, {}]",
                if args.is_empty() && envs.is_empty() {
                    "0"
                } else {
                    expected
                }
            )
        );
    }
}

#[test]
fn thread_layout_from_flag_env_and_file() {
    let file = TempFile::new("runtime", "kvcache.toml", "runtime = \"shared\"\n");
    for (args, envs, expected) in [
        (&[][..], &[][..], "per-core"),
        (&["--runtime", "shared"][..], &[][..], "shared"),
        (&[][..], &[("KV_CACHE_RUNTIME", "shared")][..], "shared"),
        (&["--config", file.as_str()][..], &[][..], "shared"),
    ] {
        let s = BinServer::start(args, envs);
        assert_eq!(s.startup_field("runtime"), expected, "{args:?} {envs:?}");
        assert_eq!(
            s.client().resp(&[b"CONFIG", b"GET", b"kvcache-runtime"]),
            format!("[kvcache-runtime, {expected}]")
        );
    }
}

#[test]
fn debug_from_the_environment() {
    let s = BinServer::start(&[], &[("KV_CACHE_DEBUG", "1")]);
    let mut c = s.client();
    assert_eq!(c.cmd("PING"), "OK PONG");
    drop(c);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !s.stderr.lock().unwrap().contains("connection opened") {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn max_memory_defaults_to_a_share_of_the_cgroup_limit() {
    // A fake cgroup tree (KV_CACHE_CGROUP_ROOT) with a 256 MiB limit, v2 and v1 forms.
    let dir = std::env::temp_dir().join(format!("kvcache-cgroup-{}", std::process::id()));
    let v1 = dir.join("v1");
    std::fs::create_dir_all(v1.join("memory")).unwrap();
    std::fs::write(dir.join("memory.max"), "268435456\n").unwrap();
    std::fs::write(v1.join("memory/memory.limit_in_bytes"), "268435456\n").unwrap();
    let want = (256u64 << 20) / 4 * 3 - (8 << 20);
    for root in [&dir, &v1] {
        let s = BinServer::start(&[], &[("KV_CACHE_CGROUP_ROOT", root.to_str().unwrap())]);
        assert_eq!(s.startup_field("max_memory"), want.to_string(), "{root:?}");
        assert!(
            s.stderr().contains("cgroup memory limit"),
            "the choice is logged"
        );
        // An explicit setting wins.
        let s = BinServer::start(
            &["--max-memory", "32mb"],
            &[("KV_CACHE_CGROUP_ROOT", root.to_str().unwrap())],
        );
        assert_eq!(s.startup_field("max_memory"), (32u64 << 20).to_string());
    }
    // "max" (v2) and v1's huge number mean no limit: the usual default.
    std::fs::write(dir.join("memory.max"), "max\n").unwrap();
    std::fs::write(
        v1.join("memory/memory.limit_in_bytes"),
        "9223372036854771712\n",
    )
    .unwrap();
    for root in [&dir, &v1] {
        let s = BinServer::start(&[], &[("KV_CACHE_CGROUP_ROOT", root.to_str().unwrap())]);
        assert_eq!(
            s.startup_field("max_memory"),
            (1u64 << 30).to_string(),
            "{root:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
