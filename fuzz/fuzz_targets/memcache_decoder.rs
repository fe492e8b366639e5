//! The memcached decoder on arbitrary bytes with small random limits, fed whole, in two pieces
//! and one byte at a time (same results required). Every frame must respect the limits: its
//! command line within `max_line + 1` bytes, a data block within `max_value` followed by
//! `\r\n`, keys within 250 bytes (and non-empty), opaque tokens within 31; an over-limit data
//! block is refused from its header alone and then skipped, never buffered; the only fatal
//! error is an overlong command line.
#![no_main]

use kvcache::protocol::memcache::{KEY_MAX, McRequest, OPAQUE_MAX};
use kvcache::protocol::{Limits, Request};
use kvcache_fuzz::{Event, Input, Memcache, feed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data, 5);
    let limits = Limits {
        max_line: input.byte() as usize % 300,
        max_value: input.byte() as usize % 64,
        ..Limits::default()
    };
    let stream = input.stream;
    let cut = input.u16() as usize % (stream.len() + 1);

    let mut check = |req: Request<'_>, frame: &[u8]| {
        let Request::Memcache(req) = req else {
            panic!("the memcache decoder made a non-memcache request")
        };
        let nl = frame
            .iter()
            .position(|&b| b == b'\n')
            .expect("a frame starts with a command line");
        assert!(nl < limits.max_line + 1, "command line of {} bytes", nl + 1);
        let key_ok = |k: &[u8]| !k.is_empty() && k.len() <= KEY_MAX;
        match &req {
            McRequest::Store { key, value, .. } => {
                assert!(key_ok(key));
                assert!(value.len() <= limits.max_value, "value of {}", value.len());
                assert_eq!(frame.len(), nl + 1 + value.len() + 2);
                assert!(frame.ends_with(b"\r\n"));
            }
            McRequest::Meta {
                key, flags, value, ..
            } => {
                assert!(key_ok(key));
                assert!(value.len() <= limits.max_value);
                assert!(flags.opaque().is_none_or(|o| o.len() <= OPAQUE_MAX));
            }
            McRequest::Get { keys, .. } => {
                assert!(keys.iter().count() > 0);
                assert!(keys.iter().all(key_ok));
            }
            McRequest::TooLarge { .. } => {
                assert_eq!(frame.len(), nl + 1, "refused from the header")
            }
            McRequest::BadChunk { .. } => {
                assert!(!frame.ends_with(b"\r\n") || frame.len() > nl + 1)
            }
            _ => {}
        }
        !matches!(req, McRequest::Quit)
    };
    let mut run = |cuts: &[usize]| {
        let mut dec = Memcache {
            decoder: Default::default(),
            limits,
        };
        feed(&mut dec, stream, cuts, &mut check)
    };
    let whole = run(&[stream.len()]);
    for e in &whole {
        if let Event::Invalid {
            error,
            consumed: None,
        } = e
        {
            assert_eq!(error, "CLIENT_ERROR line too long");
        }
    }
    assert_eq!(run(&[cut, stream.len()]), whole, "split at {cut}");
    let bytewise: Vec<usize> = (1..=stream.len()).collect();
    assert_eq!(run(&bytewise), whole, "fed byte by byte");
});
