//! The RESP decoder on arbitrary bytes with small random limits, fed whole, in two pieces and
//! one byte at a time (same results required). Every frame must respect the limits: at most
//! `max_args` arguments; a multibulk within `max_request` bytes with each bulk within
//! `max(max_value, max_key)`; an inline request within `max_line + 1` bytes; every key a
//! command names within `max_key`. An independent splitter re-reads each frame's bytes.
//! Over-limit requests within `max_discard` are skipped (in pieces as the input arrives) and
//! answered with a non-fatal error; the feed loop merges the pieces before comparing.
//! The GET/SET fast path (`decode_hot`) must take exactly what `decode` makes the same plain
//! GET or SET of.
#![no_main]

use kvcache::protocol::resp::RespDecoder;
use kvcache::protocol::{Decoded, Hot, Limits, Request, SetCond, SetKind};
use kvcache_fuzz::{Input, Resp, feed, keys, split_request, values};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data, 10);
    let limits = Limits {
        max_line: input.byte() as usize % 96,
        max_key: input.byte() as usize % 24,
        max_value: input.byte() as usize % 48,
        max_args: 1 + input.byte() as usize % 8,
        max_request: input.u16() as usize % 512,
        max_batch: 1 + input.byte() as usize % 8,
        // 0 (close on any over-limit request) about half the time, else a small skip bound.
        max_discard: (input.u16() as usize % 2048).saturating_sub(1024),
    };
    let stream = input.stream;
    let cut = input.u16() as usize % (stream.len() + 1);

    let mut check = |req: Request<'_>, frame: &[u8]| {
        let (args, len) = split_request(frame).expect("a frame is one whole request");
        assert_eq!(len, frame.len(), "frame length");
        assert!(
            !args.is_empty() && args.len() <= limits.max_args,
            "{} args",
            args.len()
        );
        let arg_max = if frame[0] == b'*' {
            assert!(
                frame.len() <= limits.max_request,
                "request of {}",
                frame.len()
            );
            limits.max_value.max(limits.max_key)
        } else {
            assert!(
                frame.len() <= limits.max_line + 1,
                "inline of {}",
                frame.len()
            );
            limits.max_line
        };
        for a in &args {
            assert!(a.len() <= arg_max, "argument of {} bytes", a.len());
        }
        if !matches!(req, Request::Error(_)) {
            for k in keys(&req) {
                assert!(k.len() <= limits.max_key, "key of {} bytes", k.len());
            }
            for v in values(&req) {
                assert!(v.len() <= arg_max, "value of {} bytes", v.len());
            }
        }
        true
    };
    let mut run = |cuts: &[usize]| {
        let mut dec = Resp {
            decoder: RespDecoder::default(),
            limits,
        };
        feed(&mut dec, stream, cuts, &mut check)
    };
    if let Some((hot, consumed)) = RespDecoder::default().decode_hot(stream, &limits) {
        let mut d = RespDecoder::default();
        let Decoded::Frame { value, consumed: c } = d.decode(stream, &limits) else {
            panic!("decode_hot took a request decode does not frame");
        };
        assert_eq!(c, consumed, "hot frame length");
        let same = match (hot, &value) {
            (Hot::Get(k), Request::Get(key)) => k == *key,
            (
                Hot::Set(k, v),
                Request::Set {
                    kind: SetKind::Set,
                    key,
                    value,
                    expire: None,
                    cond: SetCond::Always,
                    keep_ttl: false,
                    get: false,
                },
            ) => (k, v) == (*key, *value),
            _ => false,
        };
        assert!(same, "hot {hot:?}, decoded {value:?}");
    }
    let whole = run(&[stream.len()]);
    assert_eq!(run(&[cut, stream.len()]), whole, "split at {cut}");
    let bytewise: Vec<usize> = (1..=stream.len()).collect();
    assert_eq!(run(&bytewise), whole, "fed byte by byte");
});
