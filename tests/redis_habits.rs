//! What Redis users reach for in their first hour: CLIENT LIST / INFO / KILL / HELP with
//! Redis's reply formats, COMMAND DOCS complete enough for redis-cli's hints, and every
//! "Try X HELP" hint pointing at a HELP that answers. Real server, real TCP.

mod common;

use std::time::Duration;

use common::{Client, TestServer, resp_frame};

/// A RESP value, structured (the harness's `resp_value` flattens to a string).
#[derive(Debug, Clone, PartialEq)]
enum V {
    Str(String),
    Int(i64),
    Err(String),
    Nil,
    Arr(Vec<V>),
}

impl V {
    fn arr(&self) -> &[V] {
        match self {
            V::Arr(v) => v,
            other => panic!("not an array: {other:?}"),
        }
    }

    fn str(&self) -> &str {
        match self {
            V::Str(s) => s,
            other => panic!("not a string: {other:?}"),
        }
    }

    /// A map (RESP3 map or RESP2 flat array) as key/value pairs.
    fn pairs(&self) -> Vec<(&str, &V)> {
        self.arr()
            .chunks(2)
            .map(|kv| (kv[0].str(), &kv[1]))
            .collect()
    }

    fn get(&self, key: &str) -> Option<&V> {
        self.pairs()
            .into_iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }
}

fn read(c: &mut Client) -> V {
    let line = c.line();
    let (tag, rest) = line.split_at(1);
    match tag {
        "+" => V::Str(rest.into()),
        "-" => V::Err(rest.into()),
        ":" => V::Int(rest.parse().unwrap()),
        "_" => V::Nil,
        "$" | "=" => {
            let n: i64 = rest.parse().unwrap();
            if n < 0 {
                return V::Nil;
            }
            let body = c.bytes(n as usize + 2);
            let mut s = String::from_utf8(body[..n as usize].to_vec()).unwrap();
            if tag == "=" {
                s = s.strip_prefix("txt:").unwrap().to_string();
            }
            V::Str(s)
        }
        "*" | "~" | "%" => {
            let n: i64 = rest.parse().unwrap();
            if n < 0 {
                return V::Nil;
            }
            let count = if tag == "%" { 2 * n } else { n };
            V::Arr((0..count).map(|_| read(c)).collect())
        }
        _ => panic!("unexpected reply {line:?}"),
    }
}

fn cmd(c: &mut Client, args: &[&str]) -> V {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    c.send(&resp_frame(&args));
    read(c)
}

/// `k=v` fields of one CLIENT LIST line.
fn fields(line: &str) -> Vec<(String, String)> {
    line.split(' ')
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .unwrap_or_else(|| panic!("{kv} in {line}"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn field(line: &str, name: &str) -> String {
    fields(line)
        .into_iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("no {name}= in {line}"))
        .1
}

/// The CLIENT LIST line of connection `id`.
fn line_of(list: &str, id: i64) -> String {
    list.lines()
        .find(|l| l.starts_with(&format!("id={id} ")))
        .unwrap_or_else(|| panic!("no id={id} in {list}"))
        .to_string()
}

#[test]
fn client_list_and_info_show_every_connection_in_redis_format() {
    let s = TestServer::default();
    let mut text = s.client();
    assert_eq!(text.cmd("PUT k v"), "OK stored");
    let mut named = s.client();
    assert_eq!(
        cmd(&mut named, &["CLIENT", "SETNAME", "worker-7"]),
        V::Str("OK".into())
    );
    assert_eq!(
        cmd(&mut named, &["CLIENT", "SETINFO", "LIB-NAME", "redis-py"]),
        V::Str("OK".into())
    );
    assert_eq!(cmd(&mut named, &["GET", "k"]), V::Str("v".into()));
    let V::Int(named_id) = cmd(&mut named, &["CLIENT", "ID"]) else {
        panic!()
    };
    let mut me = s.client();
    let V::Int(my_id) = cmd(&mut me, &["CLIENT", "ID"]) else {
        panic!()
    };
    let list = cmd(&mut me, &["CLIENT", "LIST"]).str().to_string();
    assert_eq!(list.lines().count(), 3, "{list}");
    assert!(list.ends_with('\n'));
    let order = [
        "id", "addr", "laddr", "fd", "name", "age", "idle", "flags", "db", "sub", "psub", "ssub",
        "multi", "cmd", "user", "redir", "resp", "lib-name", "lib-ver", "proto",
    ];
    for l in list.lines() {
        let names: Vec<String> = fields(l).into_iter().map(|(k, _)| k).collect();
        assert_eq!(names, order, "{l}");
        assert_eq!(field(l, "laddr"), s.addr.to_string());
        assert!(field(l, "age").parse::<u64>().is_ok() && field(l, "idle").parse::<u64>().is_ok());
    }
    let mine = line_of(&list, my_id);
    assert_eq!(field(&mine, "cmd"), "client|list");
    assert_eq!(
        field(&mine, "addr"),
        me.stream.local_addr().unwrap().to_string()
    );
    assert_eq!(field(&mine, "resp"), "2");
    let w = line_of(&list, named_id);
    assert_eq!(field(&w, "name"), "worker-7");
    assert_eq!(field(&w, "lib-name"), "redis-py");
    assert_eq!(field(&w, "cmd"), "client|id");
    assert_eq!(field(&w, "proto"), "resp");
    // Plain GET and SET take the decoder's fast path; they are named all the same.
    for (command, name) in [(&["SET", "k2", "v2"][..], "set"), (&["GET", "k2"], "get")] {
        cmd(&mut named, command);
        let id = named_id.to_string();
        let l = cmd(&mut me, &["CLIENT", "LIST", "ID", &id])
            .str()
            .to_string();
        assert_eq!(field(&l, "cmd"), name, "{l}");
    }
    let t = list.lines().find(|l| field(l, "proto") == "line").unwrap();
    assert_eq!(field(t, "cmd"), "put");
    assert_eq!(field(t, "resp"), "0");
    assert_eq!(
        field(t, "addr"),
        text.stream.local_addr().unwrap().to_string()
    );

    // Filters, as in Redis.
    let only = cmd(
        &mut me,
        &["CLIENT", "LIST", "ID", &named_id.to_string(), "999"],
    );
    assert_eq!(only.str().lines().count(), 1);
    assert_eq!(
        cmd(&mut me, &["CLIENT", "LIST", "TYPE", "pubsub"]),
        V::Str(String::new())
    );
    assert_eq!(
        cmd(&mut me, &["CLIENT", "LIST", "TYPE", "normal"])
            .str()
            .lines()
            .count(),
        3
    );

    // CLIENT INFO: the caller's own line; RESP3 sends it as verbatim text.
    let info = cmd(&mut named, &["CLIENT", "INFO"]).str().to_string();
    assert_eq!(info.lines().count(), 1);
    assert_eq!(field(&info, "cmd"), "client|info");
    assert_eq!(field(&info, "name"), "worker-7");
    let hello = cmd(&mut named, &["HELLO", "3"]);
    assert_eq!(hello.get("proto"), Some(&V::Int(3)));
    named.send(&resp_frame(&[b"CLIENT", b"INFO"]));
    let raw = named.line();
    assert!(raw.starts_with('='), "{raw}");
    let body = String::from_utf8(named.bytes(raw[1..].parse::<usize>().unwrap() + 2)).unwrap();
    assert!(body.starts_with("txt:id="), "{body}");
    assert_eq!(field(body.trim_end(), "resp"), "3");
    // The other connection's list sees the change.
    let list = cmd(&mut me, &["CLIENT", "LIST"]).str().to_string();
    assert_eq!(field(&line_of(&list, named_id), "resp"), "3");
    // A closed connection leaves the list.
    drop(text);
    list_once_len(&mut me, 2);
}

/// CLIENT LIST once it has `n` lines (a connection that was just closed leaves the table a
/// moment after its client sees the close); fails if it never gets there.
fn list_once_len(c: &mut Client, n: usize) -> String {
    let mut list = String::new();
    for _ in 0..250 {
        list = cmd(c, &["CLIENT", "LIST"]).str().to_string();
        if list.lines().count() == n {
            return list;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("CLIENT LIST never got to {n} lines: {list}");
}

#[test]
fn client_kill_closes_an_idle_connection_at_once() {
    let s = TestServer::default();
    // Idle in a read, line protocol and RESP alike.
    let mut idle_text = s.client();
    assert_eq!(idle_text.cmd("PING"), "OK PONG");
    let mut idle_resp = s.client();
    let V::Int(resp_id) = cmd(&mut idle_resp, &["CLIENT", "ID"]) else {
        panic!()
    };
    let mut admin = s.client();
    let list = cmd(&mut admin, &["CLIENT", "LIST"]).str().to_string();
    let text_line = list.lines().find(|l| field(l, "proto") == "line").unwrap();
    let text_id = field(text_line, "id");
    let text_addr = field(text_line, "addr");

    assert_eq!(
        cmd(&mut admin, &["CLIENT", "KILL", "ID", &text_id]),
        V::Int(1)
    );
    assert!(idle_text.closed_within(Duration::from_secs(5)));
    // Already gone: nothing more to kill.
    assert_eq!(
        cmd(&mut admin, &["CLIENT", "KILL", "ID", &text_id]),
        V::Int(0)
    );
    assert_eq!(
        cmd(&mut admin, &["CLIENT", "KILL", &text_addr]),
        V::Err("ERR No such client".into())
    );

    // The old form, by address.
    let resp_addr = idle_resp.stream.local_addr().unwrap().to_string();
    assert_eq!(
        cmd(&mut admin, &["CLIENT", "KILL", &resp_addr]),
        V::Str("OK".into())
    );
    assert!(idle_resp.closed_within(Duration::from_secs(5)));
    // A killed connection leaves the list at once.
    let list = cmd(&mut admin, &["CLIENT", "LIST"]).str().to_string();
    assert_eq!(list.lines().count(), 1, "{list}");
    assert!(!list.contains(&format!("id={resp_id} ")));

    // ADDR and LADDR filters; the caller is skipped unless SKIPME no.
    let mut victim = s.client();
    assert_eq!(victim.cmd("PING"), "OK PONG");
    let vaddr = victim.stream.local_addr().unwrap().to_string();
    assert_eq!(
        cmd(
            &mut admin,
            &["CLIENT", "KILL", "ADDR", &vaddr, "LADDR", "1.2.3.4:5"]
        ),
        V::Int(0)
    );
    assert_eq!(
        cmd(
            &mut admin,
            &[
                "CLIENT",
                "KILL",
                "ADDR",
                &vaddr,
                "LADDR",
                &s.addr.to_string()
            ]
        ),
        V::Int(1)
    );
    assert!(victim.closed_within(Duration::from_secs(5)));
    let V::Int(admin_id) = cmd(&mut admin, &["CLIENT", "ID"]) else {
        panic!()
    };
    assert_eq!(
        cmd(&mut admin, &["CLIENT", "KILL", "ID", &admin_id.to_string()]),
        V::Int(0),
        "SKIPME defaults to yes"
    );
    assert_eq!(cmd(&mut admin, &["PING"]), V::Str("PONG".into()));
    // Killing itself: the reply arrives, then the connection closes.
    assert_eq!(
        cmd(
            &mut admin,
            &[
                "CLIENT",
                "KILL",
                "ID",
                &admin_id.to_string(),
                "SKIPME",
                "no"
            ]
        ),
        V::Int(1)
    );
    assert!(admin.closed_within(Duration::from_secs(5)));

    // The server is unharmed.
    let mut c = s.client();
    assert_eq!(cmd(&mut c, &["PING"]), V::Str("PONG".into()));
}

#[test]
fn client_kill_by_type_user_and_age() {
    let s = TestServer::default();
    let mut a = s.client();
    assert_eq!(a.cmd("PING"), "OK PONG");
    let mut admin = s.client();
    assert_eq!(
        cmd(&mut admin, &["CLIENT", "KILL", "TYPE", "pubsub"]),
        V::Int(0)
    );
    assert_eq!(
        cmd(&mut admin, &["CLIENT", "KILL", "USER", "alice"]),
        V::Int(0)
    );
    // Nothing here is a day old.
    assert_eq!(
        cmd(&mut admin, &["CLIENT", "KILL", "MAXAGE", "86400"]),
        V::Int(0)
    );
    assert_eq!(
        cmd(
            &mut admin,
            &["CLIENT", "KILL", "TYPE", "normal", "USER", "default"]
        ),
        V::Int(1)
    );
    assert!(a.closed_within(Duration::from_secs(5)));
    assert_eq!(
        cmd(&mut admin, &["CLIENT", "KILL", "TYPE", "elephant"]),
        V::Err("ERR Unknown client type 'elephant'".into())
    );
}

/// Every `Try X HELP` hint in the source, literal or built from a container name.
fn hints_in_source() -> Vec<String> {
    fn walk(dir: &std::path::Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    let mut files = Vec::new();
    walk(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let mut hints = Vec::new();
    for text in files {
        // Code, not comments: a hint only reaches a user from a string in code.
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (at, _) in line.match_indices("Try ") {
                let rest = &line[at + 4..];
                if let Some(end) = rest.find(" HELP").filter(|&e| e < 40) {
                    hints.push(rest[..end].to_string());
                }
            }
        }
    }
    hints
}

#[test]
fn every_try_help_hint_points_to_a_working_help() {
    let s = TestServer::default();
    let mut c = s.client();
    let hints = hints_in_source();
    assert!(!hints.is_empty());
    let mut containers: Vec<String> = Vec::new();
    for h in hints {
        if h == "{cmd}" {
            // unknown_subcommand(): the containers are whatever answers with the hint.
            for name in ["CLIENT", "COMMAND", "CONFIG"] {
                containers.push(name.into());
            }
        } else {
            assert!(
                h.chars().all(|c| c.is_ascii_uppercase()),
                "a hint built from something else: Try {h} HELP"
            );
            containers.push(h);
        }
    }
    for name in containers {
        let reply = cmd(&mut c, &[&name, "no-such-sub"]);
        assert_eq!(
            reply,
            V::Err(format!(
                "ERR unknown subcommand 'no-such-sub'. Try {name} HELP."
            ))
        );
        let help = cmd(&mut c, &[&name, "HELP"]);
        let lines: Vec<&str> = help.arr().iter().map(V::str).collect();
        assert!(
            lines[0].starts_with(&format!("{name} <subcommand>")),
            "{lines:?}"
        );
        assert!(lines.len() > 4, "{lines:?}");
        assert!(lines.contains(&"HELP"), "{lines:?}");
    }
}

/// redis-cli's rendering of one COMMAND DOCS argument (`cliAddArgument` in redis-cli.c).
fn render_arg(arg: &V) -> String {
    let get = |k: &str| arg.get(k);
    let name = get("name").map(|v| v.str().to_string()).unwrap_or_default();
    let kind = get("type").expect("every argument has a type").str();
    let token = get("token")
        .map(|v| v.str().to_string())
        .unwrap_or_default();
    let flags: Vec<&str> = get("flags").map_or(vec![], |f| f.arr().iter().map(V::str).collect());
    let repeat = match kind {
        "key" | "string" | "integer" | "double" | "pattern" | "unix-time" | "token" => name,
        "oneof" => get("arguments")
            .unwrap()
            .arr()
            .iter()
            .map(render_arg)
            .collect::<Vec<_>>()
            .join("|"),
        "block" => render_args(get("arguments").unwrap()),
        "pure-token" => String::new(),
        other => panic!("unknown type {other}"),
    };
    let token = if !token.is_empty() && kind != "pure-token" {
        format!("{token} ")
    } else {
        token
    };
    let (opt, mult) = (flags.contains(&"optional"), flags.contains(&"multiple"));
    let mut out = String::new();
    if opt {
        out.push('[');
    }
    out += &token;
    out += &repeat;
    if mult {
        out += &format!(" [{repeat} ...]");
    }
    if opt {
        out.push(']');
    }
    out
}

fn render_args(args: &V) -> String {
    args.arr()
        .iter()
        .map(render_arg)
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn command_docs_give_redis_cli_its_hints() {
    let s = TestServer::default();
    for resp3 in [false, true] {
        let mut c = s.client();
        if resp3 {
            cmd(&mut c, &["HELLO", "3"]);
        }
        let docs = cmd(&mut c, &["COMMAND", "DOCS"]);
        let all = docs.pairs();
        assert_eq!(all.len() as i64, {
            let V::Int(n) = cmd(&mut c, &["COMMAND", "COUNT"]) else {
                panic!()
            };
            n
        });
        let hint = |name: &str| {
            let doc = all.iter().find(|(n, _)| *n == name).unwrap().1;
            for k in ["summary", "since", "group"] {
                assert!(doc.get(k).is_some(), "{name} lacks {k}");
            }
            doc.get("arguments").map(render_args).unwrap_or_default()
        };
        assert_eq!(
            hint("set"),
            "key value [NX|XX] [GET] [EX seconds|PX milliseconds|EXAT unix-time-seconds|PXAT unix-time-milliseconds|KEEPTTL]"
        );
        assert_eq!(hint("get"), "key");
        assert_eq!(hint("mset"), "key value [key value ...]");
        assert_eq!(hint("del"), "key [key ...]");
        assert_eq!(hint("expire"), "key seconds [NX|XX|GT|LT]");
        assert_eq!(hint("dbsize"), "");
        assert_eq!(hint("bitcount"), "key [start end [BYTE|BIT]]");
        assert_eq!(
            hint("lcs"),
            "key1 key2 [LEN] [IDX] [MINMATCHLEN min-match-len] [WITHMATCHLEN]"
        );
        assert_eq!(hint("setrange"), "key offset value");
        // Subcommands, named container|sub as redis-cli expects.
        let client = all.iter().find(|(n, _)| *n == "client").unwrap().1;
        let subs = client.get("subcommands").unwrap().pairs();
        let list = subs.iter().find(|(n, _)| *n == "client|list").unwrap().1;
        assert_eq!(
            render_args(list.get("arguments").unwrap()),
            "[TYPE NORMAL|MASTER|REPLICA|PUBSUB] [ID client-id [client-id ...]]"
        );
        assert!(subs.iter().all(|(n, _)| n.starts_with("client|")));
        assert!(subs.iter().any(|(n, _)| *n == "client|kill"));
        let object = all.iter().find(|(n, _)| *n == "object").unwrap().1;
        let subs = object.get("subcommands").unwrap().pairs();
        let encoding = subs
            .iter()
            .find(|(n, _)| *n == "object|encoding")
            .unwrap()
            .1;
        assert_eq!(render_args(encoding.get("arguments").unwrap()), "key");
        // Asking for one command.
        let one = cmd(&mut c, &["COMMAND", "DOCS", "GET"]);
        assert_eq!(one.pairs().len(), 1);
    }
}
