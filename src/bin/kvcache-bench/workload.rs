//! The workload: a seeded generator that decides each connection's next request and encodes
//! it. It knows nothing of sockets or timing.
//!
//! Each connection's first request is a PUT; later ones are PUTs with probability
//! `put_ratio`, else GETs of a key that connection already stored (so a correct server with
//! room scores a 100% hit rate), except that a `miss_ratio` share of GETs ask for a key that
//! was never stored. Keys are derived from (seed, connection, index) rather than kept, so a
//! connection remembers only how many keys it has written: memory stays flat however long
//! the run.

use kvcache::client::{Protocol, encode_get, encode_put};
use rand::rngs::SmallRng;
use rand::{Rng, RngExt, SeedableRng};

/// The characters keys and values are drawn from: ASCII letters and digits.
const ALPHANUMERIC: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/// Extra random bytes in each connection's value pool, so consecutive values differ.
const VALUE_POOL_SLACK: usize = 4096;

/// What the generator is asked to produce; shared by every connection of a run.
#[derive(Debug, Clone)]
pub struct WorkloadSpec {
    /// Wire protocol to encode requests in.
    pub protocol: Protocol,
    /// Fraction of requests (after each connection's first) that are PUTs.
    pub put_ratio: f64,
    /// Fraction of GETs sent on purpose to keys that were never stored.
    pub miss_ratio: f64,
    /// Key length in bytes.
    pub key_size: usize,
    /// Value length in bytes.
    pub value_size: usize,
    /// TTL in seconds sent with every PUT (0 = none).
    pub ttl: u64,
    /// Distinct keys per connection before PUTs start overwriting (0 = a new key every PUT).
    pub keys_per_connection: u64,
    /// Run seed: the same seed gives the same requests per connection.
    pub seed: u64,
}

/// The kind of a generated request, as the report counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A store request (PUT / SET).
    Put,
    /// A lookup; `expect_hit` is false for deliberate misses.
    Get {
        /// Whether the key was stored earlier on this connection.
        expect_hit: bool,
    },
}

/// SplitMix64 step: a fast, well-mixed 64-bit sequence used to derive keys from indices.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hashes several words into one seed. Each step mixes the running hash itself (not just
/// an additive state), so (connection, index) pairs cannot cancel out and collide.
fn mix(words: &[u64]) -> u64 {
    let mut hash = 0x243F_6A88_85A3_08D3u64;
    for &w in words {
        let mut state = hash ^ w;
        hash = splitmix64(&mut state);
    }
    hash
}

/// Appends `len` random alphanumeric bytes, taking 6 bits at a time from `next`.
fn fill_alphanumeric(out: &mut Vec<u8>, len: usize, mut next: impl FnMut() -> u64) {
    out.reserve(len);
    let mut bits = 0u32;
    let mut word = 0u64;
    let mut produced = 0;
    while produced < len {
        if bits < 6 {
            word = next();
            bits = 64;
        }
        let v = (word & 63) as usize;
        word >>= 6;
        bits -= 6;
        if v < ALPHANUMERIC.len() {
            out.push(ALPHANUMERIC[v]);
            produced += 1;
        }
    }
}

/// One connection's request generator.
#[derive(Debug)]
pub struct Workload {
    spec: WorkloadSpec,
    connection: u64,
    rng: SmallRng,
    /// Keys written so far (indices `0..stored` exist on the server).
    stored: u64,
    values: Vec<u8>,
    key: Vec<u8>,
}

/// Domain tags keep the derived streams apart.
const DOMAIN_OPS: u64 = 0x6f70_7300;
const DOMAIN_KEYS: u64 = 0x6b65_7900;
const DOMAIN_VALUES: u64 = 0x7661_6c00;

impl Workload {
    /// The generator for connection number `connection` of a run.
    pub fn new(spec: WorkloadSpec, connection: u64) -> Workload {
        let rng = SmallRng::seed_from_u64(mix(&[spec.seed, connection, DOMAIN_OPS]));
        let mut value_rng = SmallRng::seed_from_u64(mix(&[spec.seed, connection, DOMAIN_VALUES]));
        let mut values = Vec::new();
        fill_alphanumeric(&mut values, spec.value_size + VALUE_POOL_SLACK, || {
            value_rng.next_u64()
        });
        Workload {
            key: Vec::with_capacity(spec.key_size),
            spec,
            connection,
            rng,
            stored: 0,
            values,
        }
    }

    /// The key with index `index` of this connection.
    fn stored_key(&mut self, index: u64) -> &[u8] {
        let mut state = mix(&[self.spec.seed, self.connection, DOMAIN_KEYS, index]);
        self.key.clear();
        fill_alphanumeric(&mut self.key, self.spec.key_size, || splitmix64(&mut state));
        &self.key
    }

    /// A fresh random key that was never stored (the chance that it equals a stored key is
    /// negligible from 8 characters up: 62^8 > 2 * 10^14).
    fn miss_key(&mut self) -> &[u8] {
        self.key.clear();
        let rng = &mut self.rng;
        fill_alphanumeric(&mut self.key, self.spec.key_size, || rng.next_u64());
        &self.key
    }

    /// Decides the next request, appends its encoding to `out`, and says what it was.
    pub fn next_request(&mut self, out: &mut Vec<u8>) -> Op {
        let put = self.stored == 0 || self.rng.random::<f64>() < self.spec.put_ratio;
        if put {
            let limit = self.spec.keys_per_connection;
            let index = if limit == 0 || self.stored < limit {
                self.stored += 1;
                self.stored - 1
            } else {
                self.rng.random_range(0..limit)
            };
            let offset = self.rng.random_range(0..=VALUE_POOL_SLACK);
            let (protocol, ttl, size) = (self.spec.protocol, self.spec.ttl, self.spec.value_size);
            self.stored_key(index);
            let value = &self.values[offset..offset + size];
            encode_put(protocol, &self.key, value, ttl, out);
            Op::Put
        } else {
            let miss =
                self.spec.miss_ratio > 0.0 && self.rng.random::<f64>() < self.spec.miss_ratio;
            if miss {
                self.miss_key();
            } else {
                let index = self.rng.random_range(0..self.stored);
                self.stored_key(index);
            }
            encode_get(self.spec.protocol, &self.key, out);
            Op::Get { expect_hit: !miss }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn spec(put_ratio: f64, miss_ratio: f64) -> WorkloadSpec {
        WorkloadSpec {
            protocol: Protocol::Text,
            put_ratio,
            miss_ratio,
            key_size: 16,
            value_size: 64,
            ttl: 0,
            keys_per_connection: 0,
            seed: 42,
        }
    }

    fn parts(line: &[u8]) -> Vec<String> {
        String::from_utf8(line.to_vec())
            .unwrap()
            .split_whitespace()
            .map(String::from)
            .collect()
    }

    #[test]
    fn first_is_put_and_gets_only_ask_for_stored_keys() {
        let mut w = Workload::new(spec(0.3, 0.0), 7);
        let mut stored = HashSet::new();
        let (mut puts, mut gets) = (0, 0);
        for i in 0..5000 {
            let mut out = Vec::new();
            let op = w.next_request(&mut out);
            let p = parts(&out);
            assert!(out.ends_with(b"\n"));
            match op {
                Op::Put => {
                    puts += 1;
                    assert_eq!(p[0], "PUT");
                    assert_eq!(p[1].len(), 16);
                    assert_eq!(p[2].len(), 64);
                    assert!(
                        p[1].bytes()
                            .chain(p[2].bytes())
                            .all(|b| b.is_ascii_alphanumeric())
                    );
                    stored.insert(p[1].clone());
                }
                Op::Get { expect_hit } => {
                    assert!(i > 0, "the first request must be a PUT");
                    gets += 1;
                    assert!(expect_hit);
                    assert_eq!(p[0], "GET");
                    assert!(stored.contains(&p[1]), "GET of a key never stored");
                }
            }
        }
        // Roughly the requested mix.
        let share = puts as f64 / (puts + gets) as f64;
        assert!((0.25..0.35).contains(&share), "{share}");
    }

    #[test]
    fn misses_go_to_unstored_keys() {
        let mut w = Workload::new(spec(0.5, 0.5), 1);
        let mut stored = HashSet::new();
        let mut misses = 0;
        for _ in 0..2000 {
            let mut out = Vec::new();
            let op = w.next_request(&mut out);
            let key = parts(&out)[1].clone();
            match op {
                Op::Put => {
                    stored.insert(key);
                }
                Op::Get { expect_hit } => {
                    assert_eq!(stored.contains(&key), expect_hit);
                    misses += usize::from(!expect_hit);
                }
            }
        }
        assert!(misses > 300, "{misses}");
    }

    #[test]
    fn put_keys_are_distinct_across_connections() {
        let mut keys = HashSet::new();
        for conn in 0..20 {
            let mut w = Workload::new(spec(1.0, 0.0), conn);
            for _ in 0..2000 {
                let mut out = Vec::new();
                w.next_request(&mut out);
                keys.insert(parts(&out)[1].clone());
            }
        }
        assert_eq!(keys.len(), 40_000);
    }

    #[test]
    fn seeded_and_per_connection() {
        let run = |seed, conn| {
            let mut s = spec(0.5, 0.1);
            s.seed = seed;
            let mut w = Workload::new(s, conn);
            let mut out = Vec::new();
            for _ in 0..100 {
                w.next_request(&mut out);
            }
            out
        };
        assert_eq!(run(1, 0), run(1, 0));
        assert_ne!(run(1, 0), run(1, 1));
        assert_ne!(run(1, 0), run(2, 0));
    }

    #[test]
    fn key_limit_and_resp_ttl() {
        let mut s = spec(1.0, 0.0);
        s.keys_per_connection = 3;
        s.protocol = Protocol::Resp;
        s.ttl = 60;
        let mut w = Workload::new(s, 0);
        for _ in 0..50 {
            let mut out = Vec::new();
            assert_eq!(w.next_request(&mut out), Op::Put);
            assert!(out.starts_with(b"*5\r\n$3\r\nSET\r\n$16\r\n"));
            assert!(out.ends_with(b"$2\r\nEX\r\n$2\r\n60\r\n"));
        }
        assert_eq!(w.stored, 3);
    }
}
