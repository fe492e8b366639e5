//! Persistence commands: SAVE, BGSAVE, LASTSAVE and INFO's `# Persistence` section, over the
//! snapshot engine in [`crate::snapshot`].
//!
//! Both SAVE and BGSAVE save on a thread of their own, shard by shard, while every other
//! connection goes on being served; SAVE differs only in that its own connection waits for
//! the outcome (its reply, then the requests it pipelined behind it). One save runs at a time;
//! another SAVE or BGSAVE meanwhile gets Redis's "Background save already in progress".

use std::fmt::Write as _;

use super::{Context, Flow, Reply, Session};
use crate::protocol::{Proto, Request, Response};
use crate::snapshot::{Refused, SaveReport};

const IN_PROGRESS: &str = "ERR Background save already in progress";
const OFF: &str = "ERR snapshots are off: start kvcache-server with --snapshot-file PATH (KV_CACHE_SNAPSHOT_FILE)";

/// A SAVE waiting for its save to finish: the connection awaits [`Pending::finish`] before it
/// answers anything after it.
#[derive(Debug)]
pub struct Pending {
    rx: tokio::sync::oneshot::Receiver<Result<SaveReport, String>>,
}

impl Pending {
    /// Waits for the save and appends SAVE's reply: RESP `+OK`, line protocol
    /// `OK saved <n> keys`, or an error naming what failed.
    pub async fn finish(self, proto: Proto, out: &mut Vec<u8>) {
        let outcome = self
            .rx
            .await
            .unwrap_or_else(|_| Err("the save thread ended without a result".into()));
        let mut w = Reply { proto, out };
        match outcome {
            Ok(r) if proto == Proto::Text => {
                w.send(Response::Simple(&format!("saved {} keys", r.keys)))
            }
            Ok(_) => w.send(Response::Ok),
            Err(e) => w.error(&format!("ERR snapshot save failed: {e}")),
        }
    }
}

/// How many keys a request may modify: the count behind `rdb_changes_since_last_save` and the
/// periodic saver's "anything to save?" (a write that turns out to change nothing, such as a
/// SETNX on an existing key, still counts, as the request is not looked into further).
pub(super) fn changes(req: &Request<'_>) -> u64 {
    match req {
        Request::Set { .. }
        | Request::Delete(_)
        | Request::GetDel(_)
        | Request::Append(..)
        | Request::IncrBy(..)
        | Request::IncrByFloat(..)
        | Request::SetRange(..)
        | Request::SetBit(..)
        | Request::Expire(..)
        | Request::Persist(_)
        | Request::Rename(..)
        | Request::Copy(..)
        | Request::Flush(_) => 1,
        Request::GetEx(_, mode) => (*mode != crate::protocol::GetExMode::Keep) as u64,
        Request::MSet(args) | Request::MSetNx(args) => args.len() as u64 / 2,
        Request::Del(keys) => keys.len() as u64,
        _ => 0,
    }
}

/// SAVE: saves now (on the save thread) and makes the connection wait for the outcome.
pub(super) fn save(ctx: &Context, s: &mut Session, w: &mut Reply<'_>) -> Flow {
    let (tx, rx) = tokio::sync::oneshot::channel();
    match ctx.snapshots.save_in_background(&ctx.store, move |r| {
        let _ = tx.send(r);
    }) {
        Ok(()) => {
            s.pending = Some(Pending { rx });
            Flow::Wait
        }
        Err(e) => {
            refused(w, e);
            Flow::Continue
        }
    }
}

/// BGSAVE [SCHEDULE]: starts a save and answers at once. (SCHEDULE matters in Redis only while
/// another child process runs; kvcache has none, so it starts the save as well.)
pub(super) fn bgsave(ctx: &Context, w: &mut Reply<'_>) {
    match ctx.snapshots.save_in_background(&ctx.store, |_| {}) {
        Ok(()) => w.send(Response::Simple("Background saving started")),
        Err(e) => refused(w, e),
    }
}

fn refused(w: &mut Reply<'_>, e: Refused) {
    w.error(match e {
        Refused::Off => OFF,
        Refused::InProgress => IN_PROGRESS,
    })
}

/// LASTSAVE: unix time of the last successful save (of start-up before any, as in Redis; of
/// the loaded snapshot's save when that is later).
pub(super) fn lastsave(ctx: &Context, w: &mut Reply<'_>) {
    w.send(Response::Int(ctx.snapshots.status().last_save_unix as i64));
}

/// INFO's `# Persistence` section: Redis's field names where the meaning is the same
/// (`rdb_*` describe our snapshot), `kvcache_*` for the rest.
pub(super) fn info_section(ctx: &Context, o: &mut String) {
    let st = ctx.snapshots.status();
    let load = st.load.clone().unwrap_or_default();
    let secs = |v: Option<u64>| v.map_or(-1, |s| s as i64);
    let _ = write!(
        o,
        "# Persistence\r\nloading:0\r\nasync_loading:0\r\n\
         current_save_keys_processed:{}\r\ncurrent_save_keys_total:{}\r\n\
         rdb_changes_since_last_save:{}\r\nrdb_bgsave_in_progress:{}\r\nrdb_last_save_time:{}\r\n\
         rdb_last_bgsave_status:{}\r\nrdb_last_bgsave_time_sec:{}\r\nrdb_current_bgsave_time_sec:{}\r\n\
         rdb_saves:{}\r\nrdb_last_load_keys_expired:{}\r\nrdb_last_load_keys_loaded:{}\r\n\
         aof_enabled:0\r\naof_rewrite_in_progress:0\r\n\
         kvcache_snapshot_file:{}\r\nkvcache_snapshot_interval:{}\r\nkvcache_last_save_keys:{}\r\n\
         kvcache_last_save_bytes:{}\r\nkvcache_save_failures:{}\r\nkvcache_last_save_error:{}\r\n\
         kvcache_last_load_keys_evicted:{}\r\nkvcache_last_load_keys_refused:{}\r\n\
         kvcache_last_load_time_ms:{}\r\n\r\n",
        st.current_keys,
        st.current_total,
        st.changes,
        st.in_progress as u8,
        st.last_save_unix,
        if st.last_ok { "ok" } else { "err" },
        secs(st.last_secs),
        secs(st.current_secs),
        st.saves,
        load.expired,
        load.loaded,
        ctx.snapshots
            .path()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        ctx.config.snapshot_interval,
        st.last_keys,
        st.last_bytes,
        st.failures,
        st.last_error.unwrap_or_default().replace(['\r', '\n'], " "),
        load.evicted,
        load.refused,
        load.took.as_millis(),
    );
}
