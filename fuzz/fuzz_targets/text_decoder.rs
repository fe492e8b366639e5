//! The line-protocol decoder on arbitrary bytes, fed as the server feeds it: whole, in two
//! pieces, and one byte at a time. All three must give the same requests and errors; frames
//! never span more than `max_line + 1` bytes; the only fatal error is an overlong line.
#![no_main]

use kvcache::protocol::Request;
use kvcache::protocol::text::{LineDecoder, MAX_TOKEN, is_printable};
use kvcache_fuzz::{Event, Input, Text, feed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data, 3);
    let max_line = match input.byte() {
        b @ 0..=199 => (b % 48) as usize,
        b => 200 + 64 * (b as usize - 200),
    };
    let stream = input.stream;
    let cut = input.u16() as usize % (stream.len() + 1);

    let mut check = |req: Request<'_>, frame: &[u8]| {
        assert!(
            frame.len() <= max_line + 1,
            "frame of {} bytes",
            frame.len()
        );
        assert!(frame.ends_with(b"\n"));
        let tokens = match req {
            Request::Get(k) | Request::Delete(k) | Request::Exists(k) => vec![k],
            Request::Set { key, value, .. } => vec![key, value],
            _ => Vec::new(),
        };
        for t in tokens {
            assert!(t.len() <= MAX_TOKEN && t.iter().all(|&b| is_printable(b)));
        }
        true
    };
    let mut run = |cuts: &[usize]| {
        let mut dec = Text {
            decoder: LineDecoder::default(),
            max_line,
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
            assert_eq!(error, &format!("line too long (max {max_line} bytes)"));
        }
    }
    assert_eq!(run(&[cut, stream.len()]), whole, "split at {cut}");
    let bytewise: Vec<usize> = (1..=stream.len()).collect();
    assert_eq!(run(&bytewise), whole, "fed byte by byte");
});
