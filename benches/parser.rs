//! Decoders and encoders: `cargo bench --bench parser`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kvcache::protocol::resp::RespDecoder;
use kvcache::protocol::text::LineDecoder;
use kvcache::protocol::{self, Decoded, Limits, Proto, Response};

fn parsers(c: &mut Criterion) {
    let limits = Limits::default();
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(1));
    let put = b"PUT user:0000000042 aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa 3600\n";
    let get = b"GET user:0000000042\n";
    let mut line = LineDecoder::default();
    g.bench_function("text_put", |b| {
        b.iter(|| match line.decode(black_box(put), limits.max_line) {
            Decoded::Frame { consumed, .. } => consumed,
            _ => unreachable!(),
        })
    });
    g.bench_function("text_get", |b| {
        b.iter(|| match line.decode(black_box(get), limits.max_line) {
            Decoded::Frame { consumed, .. } => consumed,
            _ => unreachable!(),
        })
    });
    let set = b"*5\r\n$3\r\nSET\r\n$15\r\nuser:0000000042\r\n$64\r\naaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n$2\r\nEX\r\n$4\r\n3600\r\n";
    let rget = b"*2\r\n$3\r\nGET\r\n$15\r\nuser:0000000042\r\n";
    let mut resp = RespDecoder::default();
    g.bench_function("resp_set_ex", |b| {
        b.iter(|| match resp.decode(black_box(set), &limits) {
            Decoded::Frame { consumed, .. } => consumed,
            _ => unreachable!(),
        })
    });
    g.bench_function("resp_get", |b| {
        b.iter(|| match resp.decode(black_box(rget), &limits) {
            Decoded::Frame { consumed, .. } => consumed,
            _ => unreachable!(),
        })
    });
    g.finish();

    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(1));
    let value = [b'a'; 64];
    let mut out = Vec::with_capacity(1024);
    g.bench_function("text_value", |b| {
        b.iter(|| {
            out.clear();
            protocol::encode(Proto::Text, Response::Bulk(black_box(&value)), &mut out);
            out.len()
        })
    });
    g.bench_function("resp_bulk", |b| {
        b.iter(|| {
            out.clear();
            protocol::encode(Proto::Resp2, Response::Bulk(black_box(&value)), &mut out);
            out.len()
        })
    });
    g.finish();
}

criterion_group!(benches, parsers);
criterion_main!(benches);
