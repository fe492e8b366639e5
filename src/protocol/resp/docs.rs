//! What `COMMAND DOCS` and the `HELP` subcommands say about each command: its arguments in a
//! compact syntax, parsed into the argument tree Redis reports, so `redis-cli` can show hints
//! and `help <command>` while you type, and `CLIENT HELP` lists exactly what is supported.
//!
//! The syntax reads like Redis's own (`key value [NX|XX]`), with two additions so it parses
//! without guessing: `TOKEN:arg` is an argument introduced by a token (`EX:seconds` reads
//! `EX seconds`) and `...` after an element makes it repeatable (`key...` reads
//! `key [key ...]`). `( )` groups alternatives or a block; `[ ]` makes it optional; an
//! upper-case word alone is a pure token.

/// Argument syntax of every top-level command, by lower-case name (as in [`super::COMMANDS`]).
pub static SYNTAX: &[(&str, &str)] = &[
    ("append", "key value"),
    ("auth", "[username] password"),
    ("bitcount", "key [start end [BYTE|BIT]]"),
    ("bitpos", "key bit [start [end [BYTE|BIT]]]"),
    ("client", ""),
    ("command", ""),
    ("config", ""),
    ("copy", "source destination [DB:destination-db] [REPLACE]"),
    ("dbsize", ""),
    ("decr", "key"),
    ("decrby", "key decrement"),
    ("del", "key..."),
    ("echo", "message"),
    ("exists", "key..."),
    ("expire", "key seconds [NX|XX|GT|LT]"),
    ("expireat", "key unix-time-seconds [NX|XX|GT|LT]"),
    ("expiretime", "key"),
    ("flushall", "[ASYNC|SYNC]"),
    ("flushdb", "[ASYNC|SYNC]"),
    ("function", ""),
    ("get", "key"),
    ("getbit", "key offset"),
    ("getdel", "key"),
    (
        "getex",
        "key [EX:seconds|PX:milliseconds|EXAT:unix-time-seconds|PXAT:unix-time-milliseconds|PERSIST]",
    ),
    ("getset", "key value"),
    ("getrange", "key start end"),
    (
        "hello",
        "[protover [AUTH:(username password)] [SETNAME:clientname]]",
    ),
    ("bgsave", "[SCHEDULE]"),
    ("incr", "key"),
    ("incrby", "key increment"),
    ("incrbyfloat", "key increment"),
    ("info", "[section...]"),
    ("keys", "pattern"),
    ("lastsave", ""),
    (
        "lcs",
        "key1 key2 [LEN] [IDX] [MINMATCHLEN:min-match-len] [WITHMATCHLEN]",
    ),
    ("mget", "key..."),
    ("mset", "(key value)..."),
    ("msetnx", "(key value)..."),
    ("object", ""),
    ("persist", "key"),
    ("save", ""),
    ("pexpire", "key milliseconds [NX|XX|GT|LT]"),
    ("pexpireat", "key unix-time-milliseconds [NX|XX|GT|LT]"),
    ("pexpiretime", "key"),
    ("ping", "[message]"),
    ("psetex", "key milliseconds value"),
    ("pttl", "key"),
    ("quit", ""),
    ("randomkey", ""),
    ("rename", "key newkey"),
    ("renamenx", "key newkey"),
    ("scan", "cursor [MATCH:pattern] [COUNT:count] [TYPE:type]"),
    ("select", "index"),
    (
        "set",
        "key value [NX|XX] [GET] [EX:seconds|PX:milliseconds|EXAT:unix-time-seconds|PXAT:unix-time-milliseconds|KEEPTTL]",
    ),
    ("setex", "key seconds value"),
    ("setbit", "key offset value"),
    ("setnx", "key value"),
    ("setrange", "key offset value"),
    ("strlen", "key"),
    ("substr", "key start end"),
    ("time", ""),
    ("touch", "key..."),
    ("ttl", "key"),
    ("type", "key"),
    ("unlink", "key..."),
];

/// One subcommand of a container command (CLIENT, COMMAND, CONFIG, FUNCTION, OBJECT).
pub struct Subcommand {
    /// Redis's full name, `container|sub`.
    pub name: &'static str,
    /// Argument syntax (see the module docs).
    pub syntax: &'static str,
    /// One-line summary.
    pub summary: &'static str,
}

macro_rules! sub {
    ($name:literal, $syntax:literal, $summary:literal) => {
        Subcommand {
            name: $name,
            syntax: $syntax,
            summary: $summary,
        }
    };
}

/// The subcommands kvcache answers, in the order `<CONTAINER> HELP` lists them.
#[rustfmt::skip]
pub static SUBCOMMANDS: &[Subcommand] = &[
    sub!("client|getname", "", "Returns the name of the connection."),
    sub!("client|id", "", "Returns the unique client ID of the connection."),
    sub!("client|info", "", "Returns information about the connection."),
    sub!("client|kill", "(ip:port|(filter value)...)",
        "Closes connections: KILL ip:port replies OK; KILL with filters ID, ADDR, LADDR, USER, TYPE, MAXAGE, SKIPME yes|no replies how many closed (the caller is skipped unless SKIPME no)."),
    sub!("client|list", "[TYPE:(NORMAL|MASTER|REPLICA|PUBSUB)] [ID:client-id...]", "Lists open connections."),
    sub!("client|setinfo", "(LIB-NAME:libname|LIB-VER:libver)", "Sets information specific to the client or connection."),
    sub!("client|setname", "connection-name", "Sets the connection name."),
    sub!("client|help", "", "Returns helpful text about the different subcommands."),
    sub!("command|count", "", "Returns a count of commands."),
    sub!("command|docs", "[command-name...]", "Returns documentary information about one, multiple or all commands."),
    sub!("command|info", "[command-name...]", "Returns information about one, multiple or all commands."),
    sub!("command|list", "", "Returns a list of command names."),
    sub!("command|help", "", "Returns helpful text about the different subcommands."),
    sub!("config|get", "parameter...", "Returns the effective values of configuration parameters."),
    sub!("config|set", "(parameter value)...", "Not supported: settings come from flags, KV_CACHE_* variables or --config at start-up."),
    sub!("config|resetstat", "", "Not supported."),
    sub!("config|rewrite", "", "Not supported."),
    sub!("config|help", "", "Returns helpful text about the different subcommands."),
    sub!("function|flush", "[ASYNC|SYNC]", "Deletes all libraries and functions (kvcache runs no scripts: there are none)."),
    sub!("function|help", "", "Returns helpful text about the different subcommands."),
    sub!("object|encoding", "key", "Returns the internal encoding of a Redis object."),
    sub!("object|freq", "key", "Returns the logarithmic access frequency counter of a Redis object."),
    sub!("object|idletime", "key", "Returns the time since the last access to a Redis object."),
    sub!("object|refcount", "key", "Returns the reference count of a value of a key."),
    sub!("object|help", "", "Returns helpful text about the different subcommands."),
];

/// The syntax of a top-level command, if documented.
pub fn syntax(name: &str) -> Option<&'static str> {
    SYNTAX.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// The subcommands of `container` (lower case).
pub fn subcommands(container: &str) -> impl Iterator<Item = &'static Subcommand> {
    SUBCOMMANDS
        .iter()
        .filter(move |s| s.name.split_once('|').is_some_and(|(c, _)| c == container))
}

/// One argument as `COMMAND DOCS` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocArg {
    /// Argument name.
    pub name: String,
    /// Redis argument type: key, string, integer, pattern, unix-time, pure-token, oneof, block.
    pub kind: &'static str,
    /// The token that introduces it, if any.
    pub token: Option<String>,
    /// Whether it may be left out.
    pub optional: bool,
    /// Whether it may repeat.
    pub multiple: bool,
    /// Alternatives (oneof) or parts (block).
    pub args: Vec<DocArg>,
}

/// The Redis type of an argument, from its name.
fn kind_of(name: &str) -> &'static str {
    match name {
        "key" | "newkey" | "source" | "destination" | "key1" | "key2" => "key",
        "pattern" => "pattern",
        "unix-time-seconds" | "unix-time-milliseconds" => "unix-time",
        "seconds" | "milliseconds" | "increment" | "decrement" | "count" | "cursor" | "index"
        | "protover" | "client-id" | "maxage" | "offset" | "start" | "end" | "bit"
        | "destination-db" | "min-match-len" => "integer",
        _ => "string",
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok<'s> {
    Open(char),
    Close(char),
    Bar,
    Repeat,
    Word(&'s str),
}

fn tokenize(s: &str) -> Vec<Tok<'_>> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        if c == ' ' {
            rest = &rest[1..];
        } else if rest.starts_with("...") {
            out.push(Tok::Repeat);
            rest = &rest[3..];
        } else if c == '[' || c == '(' {
            out.push(Tok::Open(c));
            rest = &rest[1..];
        } else if c == ']' || c == ')' {
            out.push(Tok::Close(c));
            rest = &rest[1..];
        } else if c == '|' {
            out.push(Tok::Bar);
            rest = &rest[1..];
        } else {
            let end = rest
                .char_indices()
                .find(|&(i, c)| " []()|".contains(c) || rest[i..].starts_with("..."))
                .map_or(rest.len(), |(i, _)| i);
            out.push(Tok::Word(&rest[..end]));
            rest = &rest[end..];
        }
    }
    out
}

fn is_token_word(w: &str) -> bool {
    !w.is_empty()
        && w.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
        && w.bytes().any(|b| b.is_ascii_uppercase())
}

struct Parser<'s> {
    toks: Vec<Tok<'s>>,
    pos: usize,
}

impl<'s> Parser<'s> {
    fn peek(&self) -> Option<&Tok<'s>> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok<'s>> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    /// Sequences separated by `|`, up to a closing bracket or the end.
    fn alternatives(&mut self) -> Result<Vec<Vec<DocArg>>, String> {
        let mut alts = vec![self.sequence()?];
        while self.peek() == Some(&Tok::Bar) {
            self.pos += 1;
            alts.push(self.sequence()?);
        }
        Ok(alts)
    }

    fn sequence(&mut self) -> Result<Vec<DocArg>, String> {
        let mut seq = Vec::new();
        while !matches!(self.peek(), None | Some(Tok::Bar | Tok::Close(_))) {
            seq.push(self.unit()?);
        }
        Ok(seq)
    }

    fn unit(&mut self) -> Result<DocArg, String> {
        let mut arg = match self.next() {
            Some(Tok::Open(open)) => {
                let alts = self.alternatives()?;
                let close = if open == '[' { ']' } else { ')' };
                if self.next() != Some(Tok::Close(close)) {
                    return Err(format!("missing '{close}'"));
                }
                let mut arg = group(alts)?;
                arg.optional |= open == '[';
                arg
            }
            Some(Tok::Word(w)) if w.ends_with(':') => {
                let token = &w[..w.len() - 1];
                let mut arg = self.unit()?;
                arg.token = Some(token.to_string());
                arg
            }
            Some(Tok::Word(w)) => match w.split_once(':') {
                Some((token, name)) if is_token_word(token) => DocArg {
                    name: name.to_string(),
                    kind: kind_of(name),
                    token: Some(token.to_string()),
                    optional: false,
                    multiple: false,
                    args: Vec::new(),
                },
                _ if is_token_word(w) => DocArg {
                    name: w.to_ascii_lowercase(),
                    kind: "pure-token",
                    token: Some(w.to_string()),
                    optional: false,
                    multiple: false,
                    args: Vec::new(),
                },
                _ => DocArg {
                    name: w.to_string(),
                    kind: kind_of(w),
                    token: None,
                    optional: false,
                    multiple: false,
                    args: Vec::new(),
                },
            },
            other => return Err(format!("unexpected {other:?}")),
        };
        if self.peek() == Some(&Tok::Repeat) {
            self.pos += 1;
            arg.multiple = true;
        }
        Ok(arg)
    }
}

/// One argument from bracketed alternatives: a single element stays itself, several
/// elements form a block, several alternatives a oneof.
fn group(mut alts: Vec<Vec<DocArg>>) -> Result<DocArg, String> {
    let as_one = |mut seq: Vec<DocArg>| -> Result<DocArg, String> {
        match seq.len() {
            0 => Err("empty group".into()),
            1 => Ok(seq.remove(0)),
            _ => Ok(DocArg {
                name: seq
                    .iter()
                    .map(|a| a.name.as_str())
                    .collect::<Vec<_>>()
                    .join("-"),
                kind: "block",
                token: None,
                optional: false,
                multiple: false,
                args: seq,
            }),
        }
    };
    if alts.len() == 1 {
        return as_one(alts.remove(0));
    }
    let args = alts
        .into_iter()
        .map(as_one)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(DocArg {
        name: args
            .iter()
            .map(|a| a.name.as_str())
            .take(2)
            .collect::<Vec<_>>()
            .join("-or-"),
        kind: "oneof",
        token: None,
        optional: false,
        multiple: false,
        args,
    })
}

/// Parses a syntax string (see the module docs) into the arguments it describes.
pub fn parse(syntax: &str) -> Result<Vec<DocArg>, String> {
    let mut p = Parser {
        toks: tokenize(syntax),
        pos: 0,
    };
    let seq = p.sequence()?;
    if p.pos < p.toks.len() {
        return Err(format!("unexpected {:?}", p.toks[p.pos]));
    }
    Ok(seq)
}

/// Renders arguments the way `redis-cli` builds its hints from `COMMAND DOCS`
/// (`key value [NX|XX]`), for the HELP subcommands and the tests.
pub fn display(args: &[DocArg]) -> String {
    args.iter().map(display_one).collect::<Vec<_>>().join(" ")
}

fn display_one(a: &DocArg) -> String {
    let repeat = match a.kind {
        "oneof" => a.args.iter().map(display_one).collect::<Vec<_>>().join("|"),
        "block" => display(&a.args),
        "pure-token" => String::new(),
        _ => a.name.clone(),
    };
    let mut token = a.token.clone().unwrap_or_default();
    if !token.is_empty() && a.kind != "pure-token" {
        token.push(' ');
    }
    let mut out = String::new();
    if a.optional {
        out.push('[');
    }
    out.push_str(&token);
    out.push_str(&repeat);
    if a.multiple {
        out.push_str(" [");
        out.push_str(&repeat);
        out.push_str(" ...]");
    }
    if a.optional {
        out.push(']');
    }
    out
}

/// The lines `<CONTAINER> HELP` answers with, as Redis lays them out: a usage line, then each
/// subcommand's syntax and an indented summary.
pub fn help_lines(container: &str) -> Vec<String> {
    let upper = container.to_ascii_uppercase();
    let mut lines = vec![format!(
        "{upper} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    )];
    for s in subcommands(container) {
        let name = s.name.split_once('|').map_or(s.name, |(_, n)| n);
        let syntax = parse(s.syntax).map(|a| display(&a)).unwrap_or_default();
        let head = format!("{} {syntax}", name.to_ascii_uppercase());
        lines.push(head.trim_end().to_string());
        lines.push(format!("    {}", s.summary));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(syntax: &str) -> String {
        display(&parse(syntax).unwrap())
    }

    #[test]
    fn renders_like_redis_cli() {
        // The displays Redis's own docs give for these commands.
        assert_eq!(
            shown(syntax("set").unwrap()),
            "key value [NX|XX] [GET] [EX seconds|PX milliseconds|EXAT unix-time-seconds|PXAT unix-time-milliseconds|KEEPTTL]"
        );
        assert_eq!(shown("key..."), "key [key ...]");
        assert_eq!(shown("(key value)..."), "key value [key value ...]");
        assert_eq!(shown("[section...]"), "[section [section ...]]");
        assert_eq!(
            shown(syntax("hello").unwrap()),
            "[protover [AUTH username password] [SETNAME clientname]]"
        );
        assert_eq!(
            shown(syntax("scan").unwrap()),
            "cursor [MATCH pattern] [COUNT count] [TYPE type]"
        );
        assert_eq!(
            shown("[TYPE:(NORMAL|MASTER|REPLICA|PUBSUB)] [ID:client-id...]"),
            "[TYPE NORMAL|MASTER|REPLICA|PUBSUB] [ID client-id [client-id ...]]"
        );
        assert_eq!(shown(""), "");
        // The string, bit and keyspace commands, as Redis 7's COMMAND DOCS displays them.
        for (name, redis) in [
            ("bitcount", "key [start end [BYTE|BIT]]"),
            ("bitpos", "key bit [start [end [BYTE|BIT]]]"),
            ("copy", "source destination [DB destination-db] [REPLACE]"),
            (
                "lcs",
                "key1 key2 [LEN] [IDX] [MINMATCHLEN min-match-len] [WITHMATCHLEN]",
            ),
            ("getrange", "key start end"),
            ("setrange", "key offset value"),
            ("getbit", "key offset"),
            ("setbit", "key offset value"),
            ("incrbyfloat", "key increment"),
            ("rename", "key newkey"),
            ("expiretime", "key"),
        ] {
            assert_eq!(shown(syntax(name).unwrap()), redis, "{name}");
        }
        let copy = parse(syntax("copy").unwrap()).unwrap();
        assert_eq!(
            copy.iter().map(|a| a.kind).collect::<Vec<_>>(),
            ["key", "key", "integer", "pure-token"]
        );
    }

    #[test]
    fn parses_into_redis_argument_types() {
        let set = parse(syntax("set").unwrap()).unwrap();
        assert_eq!(
            set.iter().map(|a| a.kind).collect::<Vec<_>>(),
            ["key", "string", "oneof", "pure-token", "oneof"]
        );
        assert!(set[2].optional && set[4].optional && !set[0].optional);
        assert_eq!(set[4].args[0].token.as_deref(), Some("EX"));
        assert_eq!(set[4].args[0].kind, "integer");
        assert_eq!(set[4].args[4].kind, "pure-token");
        assert!(parse("[a").is_err());
        assert!(parse("a]").is_err());
        assert!(parse("()").is_err());
    }

    #[test]
    fn every_command_and_subcommand_is_documented() {
        for c in super::super::COMMANDS {
            let s = syntax(c.name).unwrap_or_else(|| panic!("no syntax for {}", c.name));
            parse(s).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        }
        for (name, s) in SYNTAX {
            assert!(
                super::super::command_spec(name.as_bytes()).is_some(),
                "{name} is documented but not a command"
            );
            parse(s).unwrap();
        }
        for s in SUBCOMMANDS {
            parse(s.syntax).unwrap_or_else(|e| panic!("{}: {e}", s.name));
            let (container, _) = s.name.split_once('|').unwrap();
            assert!(super::super::command_spec(container.as_bytes()).is_some());
        }
    }

    #[test]
    fn help_lists_each_subcommand() {
        let lines = help_lines("client");
        assert_eq!(
            lines[0],
            "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
        );
        assert!(lines.contains(
            &"LIST [TYPE NORMAL|MASTER|REPLICA|PUBSUB] [ID client-id [client-id ...]]".to_string()
        ));
        assert!(lines.contains(&"HELP".to_string()));
        assert_eq!(lines.len(), 1 + 2 * subcommands("client").count());
    }
}
