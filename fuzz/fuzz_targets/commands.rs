//! Decoded requests run against a real store through `cmd::execute`, as one connection would
//! run them: the first byte picks the protocol as the server does (`*` = RESP; a parameter
//! bit picks memcached's protocols, as the memcache port does), limits and
//! store sizes come from the input, and the store is small so eviction happens. Every reply
//! must be well-formed (one RESP value, or one `OK`/`ERROR` line), and afterwards the store's
//! invariants must hold: key and memory limits, a scan that visits exactly `len()` keys once
//! each, and no stored value longer than `max_value_size`.
#![no_main]

use std::collections::HashSet;
use std::sync::Arc;

use kvcache::cmd::{self, Context, Flow, Session};
use kvcache::config::Config;
use kvcache::protocol::memcache::McDecoder;
use kvcache::protocol::resp::RespDecoder;
use kvcache::protocol::text::LineDecoder;
use kvcache::protocol::{self, Proto, Request, Response};
use kvcache::server::{ClientInfo, Registry};
use kvcache::stats::Stats;
use kvcache::store::{Access, ManualClock, Store, Write};
use kvcache_fuzz::{
    Event, Input, Memcache, Resp, Text, assert_one_resp_value, assert_one_text_line, feed,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data, 8);
    let p = input.byte();
    let shards = 1 << (p % 4);
    let max_keys = [0, 1, 3, 8, 64][(p as usize / 4) % 5];
    let max_memory = [0, 2048, 8192, 32768][(p as usize / 32) % 4];
    let config = Config {
        max_line: 1024 + input.byte() as usize * 4,
        max_key_size: 256 + input.byte() as usize * 4,
        max_value_size: 256 + input.byte() as usize * 4,
        max_args: 3 + input.byte() as usize % 64,
        max_keys,
        max_memory,
        shards,
        password: (input.byte() % 8 == 7).then(|| "pw".to_string()),
        ..Config::default()
    };
    // Milliseconds the clock moves between requests, so TTLs expire mid-stream.
    let tick = input.byte() as u64 % 4;
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let store = Arc::new(
        Store::builder()
            .shards(shards)
            .max_keys(max_keys)
            .max_memory(max_memory)
            .clock(clock.clone())
            .build(),
    );
    let ctx = Context {
        store: store.clone(),
        stats: Arc::new(Stats::default()),
        config: Arc::new(config.clone()),
        clients: Arc::new(Registry::default()),
        encodings: Default::default(),
        memcache: Default::default(),
        snapshots: Arc::new(kvcache::snapshot::Snapshots::new(None)),
    };
    let stream = input.stream;
    let memcache = p & 0x80 != 0;
    let resp = !memcache && stream.first() == Some(&b'*');
    let mut session = Session {
        proto: if memcache {
            Proto::Memcache
        } else if resp {
            Proto::Resp2
        } else {
            Proto::Text
        },
        authenticated: config.password.is_none(),
        client: ClientInfo::detached(1, "127.0.0.1:1".parse().unwrap()),
        mc: Default::default(),
        changes: 0,
        pending: None,
    };
    let mut out = Vec::new();
    let mut on_frame = |req: Request<'_>, _frame: &[u8]| {
        clock.advance(tick);
        out.clear();
        let flow = cmd::execute(&ctx, &mut session, req, &mut out);
        match session.proto {
            Proto::Text if flow == Flow::Close => assert!(out.is_empty()),
            Proto::Text => assert_one_text_line(&out),
            // memcached replies are lines (a retrieval: several, a noreply: none).
            Proto::Memcache => assert!(out.is_empty() || out.ends_with(b"\r\n")),
            _ => assert_one_resp_value(&out),
        }
        check_limits(&store, &config);
        flow == Flow::Continue
    };
    let limits = config.limits();
    // The server switches to the unauthenticated limits until AUTH; here the stream is decoded
    // once with the limits in force at the start, which is what matters for a stranger.
    let limits = if config.password.is_some() {
        limits.unauthenticated()
    } else {
        limits
    };
    let events = if memcache {
        let mut dec = Memcache {
            decoder: McDecoder::default(),
            limits,
        };
        feed(&mut dec, stream, &[stream.len()], &mut on_frame)
    } else if resp {
        let mut dec = Resp {
            decoder: RespDecoder::default(),
            limits,
        };
        feed(&mut dec, stream, &[stream.len()], &mut on_frame)
    } else {
        let mut dec = Text {
            decoder: LineDecoder::default(),
            max_line: config.max_line,
        };
        feed(&mut dec, stream, &[stream.len()], &mut on_frame)
    };
    // Decoder errors are answered the way the server answers them.
    for e in events {
        if let Event::Invalid { error, .. } = e {
            let mut out = Vec::new();
            protocol::encode(session.proto, Response::Error(&error), &mut out);
            if session.proto == Proto::Text {
                assert_one_text_line(&out);
            } else if session.proto == Proto::Memcache {
                assert!(out.ends_with(b"\r\n") && !out[..out.len() - 2].contains(&b'\n'));
            } else {
                assert_one_resp_value(&out);
            }
        }
    }
    check_invariants(&store, &config);
});

/// The limits hold after every request.
fn check_limits(store: &Store, config: &Config) {
    if config.max_keys > 0 {
        assert!(store.len() <= config.max_keys, "{} keys", store.len());
    }
    if config.max_memory > 0 {
        assert!(
            store.memory_used() <= config.max_memory || store.is_empty(),
            "memory {} over {}",
            store.memory_used(),
            config.max_memory
        );
    }
}

/// After the stream: once expired keys are swept, a scan sees exactly the stored keys, and
/// every stored key and value is within the configured sizes.
fn check_invariants(store: &Store, config: &Config) {
    check_limits(store, config);
    store.sweep();
    let mut seen = Vec::new();
    let mut cursor = 0;
    loop {
        cursor = store.scan(cursor, 7, |k| seen.push(k.to_vec()));
        if cursor == 0 {
            break;
        }
    }
    let unique: HashSet<&Vec<u8>> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "scan repeated a key");
    assert_eq!(
        seen.len(),
        store.len(),
        "scan visited {} of {} keys",
        seen.len(),
        store.len()
    );
    for k in &seen {
        assert!(
            k.len() <= config.max_key_size,
            "stored key of {} bytes",
            k.len()
        );
        let len = store
            .update(k, Access::Peek, |e| (Write::Keep, e.map(|e| e.value.len())))
            .unwrap();
        let len = len.expect("a scanned key is live");
        assert!(len <= config.max_value_size, "stored value of {len} bytes");
    }
}
