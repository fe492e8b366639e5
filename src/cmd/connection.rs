//! The connection's own state: AUTH, HELLO, SELECT, CLIENT and QUIT.

use super::{Context, Flow, REDIS_COMPAT_VERSION, Reply, Session};
use crate::protocol::{ClientCmd, Proto, Response};

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
        s.name = (!name.is_empty()).then(|| name.to_vec());
    }
    if let Some(v) = version
        && s.proto != Proto::Text
    {
        s.proto = v;
        w.proto = v;
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
    w.send(Response::Int(s.id as i64));
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

pub(super) fn client(s: &mut Session, w: &mut Reply<'_>, cmd: ClientCmd<'_>) {
    match cmd {
        ClientCmd::SetName(name) => {
            if !valid_client_name(name) {
                return w.error(
                    "ERR Client names cannot contain spaces, newlines or special characters.",
                );
            }
            s.name = (!name.is_empty()).then(|| name.to_vec());
            w.send(Response::Ok);
        }
        ClientCmd::GetName => match &s.name {
            Some(n) => w.send(Response::Bulk(n)),
            None => w.send(Response::Nil),
        },
        ClientCmd::Id => w.send(Response::Int(s.id as i64)),
        ClientCmd::SetInfo => w.send(Response::Ok),
        ClientCmd::Info => {
            let line = format!(
                "id={} addr={} name={} db=0 resp={}\n",
                s.id,
                s.peer,
                String::from_utf8_lossy(s.name.as_deref().unwrap_or_default()),
                if s.proto == Proto::Resp3 { 3 } else { 2 }
            );
            w.send(Response::Verbatim(line.as_bytes()));
        }
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
