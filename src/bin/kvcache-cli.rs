//! `kvcache-cli`: talk to a kvcache server over the line protocol.
//!
//! - With a command (`kvcache-cli GET foo`): send it, print the reply line, exit 0 for `OK`,
//!   1 for `ERROR`, 2 when the server cannot be reached (usable as a container health check).
//! - Without one, on a terminal: an interactive prompt (`>>> `) with line editing and history.
//! - Without one, with piped input: send every line, print every reply in order.
//!
//! With `--password` or `KV_CACHE_PASSWORD` set, `AUTH <password>` is sent first and a refusal
//! is an error, so a health check against a protected server fails on a wrong password.
//!
//! `help` lists the line protocol's commands, and `exit` or `quit` leave, in every mode; they
//! are answered here, not sent as they are.

use std::cell::Cell;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use kvcache::client::{
    Client, ClientError, Protocol, TlsArgs, addr_string, connect_host, parse_port,
};
use rustyline::error::ReadlineError;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::runtime::Runtime;

/// Exit status when every reply was `OK ...`.
const EXIT_OK: u8 = 0;
/// Exit status when a reply was `ERROR ...` (or authentication was refused).
const EXIT_ERROR: u8 = 1;
/// Exit status when the server could not be reached or went away.
const EXIT_CONNECTION: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "kvcache-cli",
    version,
    allow_negative_numbers = true,
    about = "Command-line client for kvcache: interactive prompt, one-shot command, or piped lines.",
    after_help = "Examples:\n  kvcache-cli                       interactive prompt (>>> ); type help for the commands\n  \
kvcache-cli PUT foo bar 60        one command; exit 0 = OK, 1 = ERROR, 2 = cannot connect\n  \
printf 'PUT a b\\nGET a\\n' | kvcache-cli   one reply per input line\n  \
kvcache-cli PING                  health check (sends AUTH first when KV_CACHE_PASSWORD is set)\n  \
kvcache-cli --tls --port 7172 --cacert ca.crt GET foo   over TLS"
)]
struct Args {
    /// Server address; 0.0.0.0 (a server's listen address) means this machine
    #[arg(long, env = "KV_CACHE_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Server port
    #[arg(long, env = "KV_CACHE_PORT", default_value = "7171", value_parser = parse_port)]
    port: u16,
    /// Send `AUTH <password>` before anything else
    #[arg(long, env = "KV_CACHE_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Seconds to wait for the connection and for each reply (0 = no limit)
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    timeout: f64,
    #[command(flatten)]
    tls: TlsArgs,
    /// A command to send instead of starting the prompt, e.g. `GET foo`
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    command: Vec<String>,
}

fn main() -> ExitCode {
    let args: Args = kvcache::config::parse_args_or_exit("kvcache-cli");
    if !(args.timeout.is_finite() && args.timeout >= 0.0) {
        eprintln!("kvcache-cli: --timeout must be a number of seconds, 0 or more");
        return ExitCode::from(EXIT_CONNECTION);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kvcache-cli: cannot start: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    ExitCode::from(run(&runtime, args))
}

fn run(rt: &Runtime, args: Args) -> u8 {
    let timeout = Duration::from_secs_f64(args.timeout);
    let host = connect_host(&args.host);
    let addr = addr_string(host, args.port);
    let line = args.command.join(" ");
    if is_help(line.as_bytes()) {
        // Needs no server.
        print!("{}", help_text());
        return EXIT_OK;
    }
    let tls = match args.tls.connector() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("kvcache-cli: {e}");
            return EXIT_CONNECTION;
        }
    };
    let mut client = match rt.block_on(Client::connect_with(
        host,
        args.port,
        Protocol::Text,
        timeout,
        tls.as_ref(),
    )) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kvcache-cli: {e}");
            return EXIT_CONNECTION;
        }
    };
    if let Some(password) = args.password.as_deref().filter(|p| !p.is_empty()) {
        match rt.block_on(client.auth(password)) {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => {
                eprintln!("kvcache-cli: authentication failed: {reason}");
                return EXIT_ERROR;
            }
            Err(e) => {
                eprintln!("kvcache-cli: {e}");
                return EXIT_CONNECTION;
            }
        }
    }
    if !args.command.is_empty() {
        one_shot(rt, client, &line)
    } else if std::io::stdin().is_terminal() {
        interactive(rt, client, &addr)
    } else {
        rt.block_on(piped(client, timeout))
    }
}

/// Whether a line is the single word `word`, in any letter case.
fn is_word(line: &[u8], word: &[u8]) -> bool {
    let mut tokens = line
        .split(|b| b.is_ascii_whitespace())
        .filter(|t| !t.is_empty());
    tokens.next().is_some_and(|t| t.eq_ignore_ascii_case(word)) && tokens.next().is_none()
}

/// Whether a line asks to leave: the protocol's QUIT (to which the server sends no reply) or
/// `exit`, the shell habit; both are sent to the server as QUIT.
fn is_quit(line: &[u8]) -> bool {
    is_word(line, b"QUIT") || is_word(line, b"EXIT")
}

/// Whether a line asks for [`help_text`].
fn is_help(line: &[u8]) -> bool {
    is_word(line, b"HELP") || is_word(line, b"?")
}

/// What `help` prints: the commands of the line protocol this client speaks (from the
/// protocol's own table) and the client's own words.
fn help_text() -> String {
    let mut out = String::from("Commands (KV-Cache line protocol):\n");
    for (_, syntax, summary) in kvcache::protocol::text::COMMANDS {
        out.push_str(&format!("  {syntax:<26}{summary}\n"));
    }
    out.push_str(
        "Keys and values are 1 to 256 printable ASCII characters without spaces; names of \
         commands are case-insensitive.\n\
         In this client: help (this list), exit or quit (leave; Ctrl-D too).\n\
         The server also speaks Redis (RESP) on the same port: use redis-cli for that.\n",
    );
    out
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|b| b.is_ascii_whitespace())
}

fn is_ok(reply: &[u8]) -> bool {
    reply == b"OK" || reply.starts_with(b"OK ")
}

fn print_line(out: &mut impl Write, line: &[u8]) -> std::io::Result<()> {
    out.write_all(line)?;
    out.write_all(b"\n")
}

fn one_shot(rt: &Runtime, mut client: Client, line: &str) -> u8 {
    if is_quit(line.as_bytes()) {
        let done = rt.block_on(async {
            client.send_line(b"QUIT").await?;
            client.finish().await
        });
        return match done {
            Ok(_) => EXIT_OK,
            Err(e) => {
                eprintln!("kvcache-cli: {e}");
                EXIT_CONNECTION
            }
        };
    }
    match rt.block_on(client.command_line(line.as_bytes())) {
        Ok(reply) => {
            let _ = print_line(&mut std::io::stdout().lock(), &reply);
            if is_ok(&reply) { EXIT_OK } else { EXIT_ERROR }
        }
        Err(e) => {
            eprintln!("kvcache-cli: {e}");
            EXIT_CONNECTION
        }
    }
}

/// Where the prompt keeps its history: `KV_CACHE_CLI_HISTFILE` (empty = none), else
/// `~/.kvcache_cli_history`.
fn history_file() -> Option<PathBuf> {
    match std::env::var_os("KV_CACHE_CLI_HISTFILE") {
        Some(p) if p.is_empty() => None,
        Some(p) => Some(PathBuf::from(p)),
        None => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kvcache_cli_history")),
    }
}

fn interactive(rt: &Runtime, mut client: Client, addr: &str) -> u8 {
    let mut editor = match rustyline::DefaultEditor::new() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("kvcache-cli: cannot start the prompt: {e}");
            return EXIT_ERROR;
        }
    };
    let history = history_file();
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    println!("Connected to {addr}. Type help for the commands, exit or Ctrl-D to leave.");
    let code = loop {
        match editor.readline(">>> ") {
            Ok(line) => {
                if is_blank(line.as_bytes()) {
                    continue;
                }
                // Like redis-cli, keep passwords out of the history file.
                if !line.trim_start().to_ascii_uppercase().starts_with("AUTH") {
                    let _ = editor.add_history_entry(line.as_str());
                }
                if is_quit(line.as_bytes()) {
                    let _ = rt.block_on(client.send_line(b"QUIT"));
                    println!("Goodbye!");
                    break EXIT_OK;
                }
                if is_help(line.as_bytes()) {
                    print!("{}", help_text());
                    continue;
                }
                match rt.block_on(client.command_line(line.as_bytes())) {
                    Ok(reply) => {
                        let _ = print_line(&mut std::io::stdout().lock(), &reply);
                    }
                    Err(e) => {
                        eprintln!("Connection to {addr} lost: {e}");
                        break EXIT_CONNECTION;
                    }
                }
            }
            Err(ReadlineError::Eof | ReadlineError::Interrupted) => {
                let _ = rt.block_on(client.send_line(b"QUIT"));
                println!("Goodbye!");
                break EXIT_OK;
            }
            Err(e) => {
                eprintln!("kvcache-cli: cannot read input: {e}");
                break EXIT_ERROR;
            }
        }
    };
    if let Some(path) = &history {
        let _ = editor.save_history(path);
    }
    code
}

/// Streams standard input to the server while printing replies as they come, so a long
/// input is pipelined instead of paying a round trip per line. Blank lines are skipped (the
/// server would only answer `ERROR empty command`); a QUIT or exit line ends the input; a
/// help line prints the help in its place among the replies.
async fn piped(client: Client, timeout: Duration) -> u8 {
    let (read_half, mut write_half) = tokio::io::split(client.into_stream());
    let sent = Cell::new(0u64);
    let input_done = Cell::new(false);
    // For each help line, how many replies come before it.
    let helps = std::cell::RefCell::new(std::collections::VecDeque::new());
    let print_helps = |out: &mut dyn Write, received: u64| {
        let mut h = helps.borrow_mut();
        while h.front().is_some_and(|&at| at <= received) {
            h.pop_front();
            let _ = out.write_all(help_text().as_bytes());
        }
    };
    let send = async {
        let mut stdin = BufReader::new(tokio::io::stdin());
        let mut line = Vec::new();
        let mut batch = Vec::new();
        loop {
            line.clear();
            let n = stdin.read_until(b'\n', &mut line).await?;
            if n == 0 {
                break;
            }
            let body = line.strip_suffix(b"\n").unwrap_or(&line);
            if is_blank(body) {
                continue;
            }
            if is_help(body) {
                helps.borrow_mut().push_back(sent.get());
                continue;
            }
            let quit = is_quit(body);
            batch.extend_from_slice(if quit { b"QUIT" } else { body });
            batch.push(b'\n');
            if !quit {
                sent.set(sent.get() + 1);
            }
            // Write when a batch builds up, when input pauses, or at QUIT.
            if quit || batch.len() >= 16 * 1024 || stdin.buffer().is_empty() {
                write_half.write_all(&batch).await?;
                batch.clear();
            }
            if quit {
                break;
            }
        }
        write_half.write_all(&batch).await?;
        // End of input: the server answers what it has, then closes.
        write_half.shutdown().await?;
        input_done.set(true);
        Ok::<(), std::io::Error>(())
    };
    let receive = async {
        let mut replies = BufReader::new(read_half);
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let mut received = 0u64;
        let mut any_error = false;
        // A timed-out read_until keeps what it read in `line`, so it is cleared only after a
        // whole reply has been handled.
        let mut line = Vec::new();
        loop {
            print_helps(&mut out, received);
            let read = replies.read_until(b'\n', &mut line);
            let n = if timeout.is_zero() {
                read.await
            } else {
                match tokio::time::timeout(timeout, read).await {
                    Ok(r) => r,
                    // Quiet but nothing owed (input is slow): keep waiting.
                    Err(_) if received == sent.get() && !input_done.get() => continue,
                    Err(_) if received == sent.get() => break,
                    Err(_) => Err(ClientError::Timeout(timeout).into_io()),
                }
            };
            match n {
                Ok(0) => break,
                Ok(_) => {
                    let body = line.strip_suffix(b"\n").unwrap_or(&line);
                    let body = body.strip_suffix(b"\r").unwrap_or(body);
                    any_error |= !is_ok(body);
                    received += 1;
                    let _ = print_line(&mut out, body);
                    line.clear();
                    if replies.buffer().is_empty() {
                        let _ = out.flush();
                    }
                }
                Err(e) => {
                    let _ = out.flush();
                    return Err(e);
                }
            }
        }
        print_helps(&mut out, u64::MAX);
        let _ = out.flush();
        Ok((received, any_error))
    };
    let (sent_result, received) = tokio::join!(send, receive);
    let sent = sent.get();
    match received {
        Ok((received, _)) if received < sent => {
            eprintln!(
                "kvcache-cli: the server closed the connection after {received} of {sent} replies"
            );
            EXIT_CONNECTION
        }
        Ok((_, any_error)) => {
            if let Err(e) = sent_result {
                eprintln!("kvcache-cli: connection error: {e}");
                EXIT_CONNECTION
            } else if any_error {
                EXIT_ERROR
            } else {
                EXIT_OK
            }
        }
        Err(e) => {
            eprintln!("kvcache-cli: {e}");
            EXIT_CONNECTION
        }
    }
}

/// Turns a client error into an `io::Error` with the same message (for the piped reader,
/// which works in `io::Result`).
trait IntoIo {
    fn into_io(self) -> std::io::Error;
}

impl IntoIo for ClientError {
    fn into_io(self) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::TimedOut, self.to_string())
    }
}
