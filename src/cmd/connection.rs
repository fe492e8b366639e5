//! The connection's own state: AUTH, HELLO, SELECT, CLIENT and QUIT; CLIENT LIST and KILL
//! also see the other connections, through the server's registry.

use super::{Context, Flow, REDIS_COMPAT_VERSION, Reply, Session};
use crate::protocol::resp::docs;
use crate::protocol::{ClientCmd, KillFilter, Proto, Response};
use crate::server::ClientInfo;

/// Compares secrets without an early exit, so response time does not reveal how much matched.
pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= std::hint::black_box((x ^ y) as usize);
    }
    diff == 0
}

pub(super) fn quit(s: &Session, w: &mut Reply<'_>) -> Flow {
    if s.proto != Proto::Text {
        w.send(Response::Ok);
    }
    Flow::Close
}

pub(super) fn auth(
    ctx: &Context,
    s: &mut Session,
    w: &mut Reply<'_>,
    user: Option<&[u8]>,
    password: &[u8],
) {
    let Some(expected) = &ctx.config.password else {
        // As Redis with no password: the default user takes any password; other users do not
        // exist.
        if let Some(u) = user {
            if u == b"default" {
                w.send(Response::Authenticated);
            } else {
                w.send(Response::WrongPass);
            }
            return;
        }
        return w.error(
            "ERR AUTH <password> called without any password configured for the default user. \
             Are you sure your configuration is correct?",
        );
    };
    let user_ok = user.is_none_or(|u| u == b"default");
    if user_ok & constant_time_eq(password, expected.as_bytes()) {
        s.authenticated = true;
        w.send(Response::Authenticated);
    } else {
        ctx.stats.auth_failures.incr();
        w.send(Response::WrongPass);
    }
}

pub(super) fn select(w: &mut Reply<'_>, db: i64) {
    if db == 0 {
        w.send(Response::Ok);
    } else {
        w.error("ERR DB index is out of range");
    }
}

pub(super) fn hello(
    ctx: &Context,
    s: &mut Session,
    w: &mut Reply<'_>,
    proto: Option<i64>,
    auth: Option<(&[u8], &[u8])>,
    name: Option<&[u8]>,
) {
    let version = match proto {
        None => None,
        Some(2) => Some(Proto::Resp2),
        Some(3) => Some(Proto::Resp3),
        Some(_) => return w.error("NOPROTO unsupported protocol version"),
    };
    if let Some((user, password)) = auth {
        let ok = user == b"default"
            && ctx
                .config
                .password
                .as_ref()
                .is_none_or(|p| constant_time_eq(password, p.as_bytes()));
        if !ok {
            ctx.stats.auth_failures.incr();
            return w.send(Response::WrongPass);
        }
        s.authenticated = true;
    }
    if !s.authenticated {
        return w.error(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH \
             <user> <pass> option can be used to authenticate the client and select the RESP protocol version at \
             the same time",
        );
    }
    if let Some(name) = name {
        if !valid_client_name(name) {
            return w
                .error("ERR Client names cannot contain spaces, newlines or special characters.");
        }
        s.client.set_name((!name.is_empty()).then_some(name));
    }
    if let Some(v) = version
        && s.proto != Proto::Text
    {
        s.proto = v;
        w.proto = v;
        s.client.set_resp(if v == Proto::Resp3 { 3 } else { 2 });
    }
    let proto_num = if s.proto == Proto::Resp3 { 3 } else { 2 };
    w.send(Response::Map(7));
    w.bulk_str("server");
    w.bulk_str("redis");
    w.bulk_str("version");
    w.bulk_str(REDIS_COMPAT_VERSION);
    w.bulk_str("proto");
    w.send(Response::Int(proto_num));
    w.bulk_str("id");
    w.send(Response::Int(s.client.id as i64));
    w.bulk_str("mode");
    w.bulk_str("standalone");
    w.bulk_str("role");
    w.bulk_str("master");
    w.bulk_str("modules");
    w.send(Response::Array(0));
}

fn valid_client_name(name: &[u8]) -> bool {
    name.iter().all(|&b| (0x21..=0x7E).contains(&b))
}

pub(super) fn client(
    ctx: &Context,
    s: &mut Session,
    w: &mut Reply<'_>,
    cmd: ClientCmd<'_>,
) -> Flow {
    match cmd {
        ClientCmd::SetName(name) => {
            if !valid_client_name(name) {
                w.error("ERR Client names cannot contain spaces, newlines or special characters.");
                return Flow::Continue;
            }
            s.client.set_name((!name.is_empty()).then_some(name));
            w.send(Response::Ok);
        }
        ClientCmd::GetName => match s.client.name() {
            Some(n) => w.send(Response::Bulk(&n)),
            None => w.send(Response::Nil),
        },
        ClientCmd::Id => w.send(Response::Int(s.client.id as i64)),
        ClientCmd::SetLib { name, value } => {
            if !valid_client_name(value) {
                let attr = if name { "lib-name" } else { "lib-ver" };
                w.error(&format!(
                    "ERR {attr} cannot contain spaces, newlines or special characters."
                ));
                return Flow::Continue;
            }
            s.client.set_lib(name, value);
            w.send(Response::Ok);
        }
        ClientCmd::Info => {
            let line = s.client.describe(Some("client|info"));
            w.send(Response::Verbatim(line.as_bytes()));
        }
        ClientCmd::List { ids, normal } => {
            let mut text = String::new();
            for c in ctx.clients.list() {
                if !normal || (!ids.is_empty() && !ids.contains(&c.id)) {
                    continue;
                }
                let current = (c.id == s.client.id).then_some("client|list");
                text.push_str(&c.describe(current));
            }
            w.send(Response::Verbatim(text.as_bytes()));
        }
        ClientCmd::Kill(f) => return kill(ctx, s, w, &f),
        ClientCmd::Help => {
            let lines = docs::help_lines("client");
            w.send(Response::Array(lines.len()));
            for l in &lines {
                w.send(Response::Simple(l));
            }
        }
    }
    Flow::Continue
}

/// Whether a connection passes every filter of a CLIENT KILL.
fn kill_matches(c: &ClientInfo, f: &KillFilter<'_>) -> bool {
    let same = |want: Option<&[u8]>, have: std::net::SocketAddr| {
        want.is_none_or(|w| w == have.to_string().as_bytes())
    };
    f.id.is_none_or(|id| id == c.id)
        && same(f.addr, c.addr)
        && same(f.laddr, c.laddr)
        && f.user.is_none_or(|u| u == b"default")
        && f.normal.unwrap_or(true)
        && f.max_age.is_none_or(|age| c.age_secs() >= age)
}

/// CLIENT KILL, as Redis answers it: the old form (`CLIENT KILL addr`) replies `+OK` or
/// `-ERR No such client` and may close the caller; the filter form replies the number of
/// connections closed and skips the caller unless `SKIPME no`. The caller, when it is a
/// target, gets its reply first and is closed after it.
fn kill(ctx: &Context, s: &Session, w: &mut Reply<'_>, f: &KillFilter<'_>) -> Flow {
    let me = s.client.id;
    let (others, caller) = ctx.clients.kill(|c| kill_matches(c, f), me);
    let close_me = caller && !f.skip_me;
    if close_me {
        ctx.clients.mark_killed(&s.client);
    }
    let killed = others + usize::from(close_me);
    if f.old_form {
        if killed == 0 {
            w.error("ERR No such client");
            return Flow::Continue;
        }
        w.send(Response::Ok);
    } else {
        w.send(Response::Int(killed as i64));
    }
    if close_me {
        Flow::Close
    } else {
        Flow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_fully() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
