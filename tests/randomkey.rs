//! RANDOMKEY must be uniform over the live keys, as Redis's is: a statistical test against the
//! real server. Each case draws many keys and compares the counts with a chi-squared bound.
//!
//! Two cases, each with the chi-squared quantile for an upper tail of 1e-7 as its bound, so a
//! fair picker fails one of them with probability below 2e-7 (expected counts are at least
//! 1000, where the chi-squared approximation of the multinomial is sound):
//! - twenty pairs of keys (`k1`/`k2`, `foo`/`bar`, ...), 2000 draws each, their statistics
//!   summed (20 degrees of freedom). Which shards a pair lands in depends on the process's hash
//!   seed, and a biased picker can look fair for one lucky pair; not for twenty.
//! - ten keys, 10 000 draws (9 degrees of freedom).
//!
//! The bias this was written against (the store starts at a random shard and takes the first
//! non-empty one, so a shard behind a run of empty ones is picked more often) gave `foo` 1833
//! and `bar` 167 of 2000 draws: a statistic of 1388 for that one pair alone.

mod common;

use std::collections::HashMap;

use common::{Client, TestServer, resp_frame};

/// Chi-squared quantiles for an upper tail of 1e-7, by degrees of freedom.
fn bound(df: usize) -> f64 {
    match df {
        1 => 28.374,
        9 => 50.172,
        20 => 71.589,
        _ => panic!("no bound for {df} degrees of freedom"),
    }
}

/// Draws `n` random keys (pipelined in batches) and counts them.
fn draw(c: &mut Client, n: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    let batch = 500;
    let mut left = n;
    while left > 0 {
        let k = left.min(batch);
        let frame = resp_frame(&[b"RANDOMKEY"]);
        c.send(&frame.repeat(k));
        for _ in 0..k {
            *counts.entry(c.resp_value()).or_insert(0) += 1;
        }
        left -= k;
    }
    counts
}

/// Pearson's statistic of `counts` against a uniform spread over `keys`.
fn chi_squared(keys: &[String], counts: &HashMap<String, usize>, n: usize) -> f64 {
    let expected = n as f64 / keys.len() as f64;
    let unknown: Vec<&String> = counts.keys().filter(|k| !keys.contains(k)).collect();
    assert!(
        unknown.is_empty(),
        "RANDOMKEY returned keys not stored: {unknown:?}"
    );
    keys.iter()
        .map(|k| {
            let o = *counts.get(k).unwrap_or(&0) as f64;
            (o - expected).powi(2) / expected
        })
        .sum()
}

/// Stores `keys` (alone) and returns the statistic of `draws` RANDOMKEY answers, with the
/// counts for the failure message.
fn statistic(c: &mut Client, keys: &[String], draws: usize) -> (f64, HashMap<String, usize>) {
    assert_eq!(c.resp(&[b"FLUSHALL"]), "+OK");
    for k in keys {
        assert_eq!(c.resp(&[b"SET", k.as_bytes(), b"v"]), "+OK");
    }
    let counts = draw(c, draws);
    (chi_squared(keys, &counts, draws), counts)
}

#[test]
fn randomkey_is_uniform_over_two_keys() {
    let s = TestServer::default();
    let mut c = s.client();
    let mut pairs = vec![
        ("k1".to_string(), "k2".to_string()),
        ("foo".into(), "bar".into()),
    ];
    pairs.extend((0..18).map(|i| (format!("foo{i}"), format!("bar{i}"))));
    let mut total = 0.0;
    let mut seen = Vec::new();
    for (a, b) in pairs {
        let (stat, counts) = statistic(&mut c, &[a, b], 2000);
        total += stat;
        seen.push(counts);
    }
    let limit = bound(20);
    assert!(
        total < limit,
        "RANDOMKEY is not uniform over two keys: summed chi-squared {total:.1} >= {limit} \
         over 20 pairs of 2000 draws; counts {seen:?}"
    );
}

#[test]
fn randomkey_is_uniform_over_ten_keys() {
    let s = TestServer::default();
    let mut c = s.client();
    let keys: Vec<String> = (0..10).map(|i| format!("key:{i}")).collect();
    let (stat, counts) = statistic(&mut c, &keys, 10_000);
    let limit = bound(9);
    assert!(
        stat < limit,
        "RANDOMKEY is not uniform over ten keys: counts {counts:?} over 10000 draws, \
         chi-squared {stat:.1} >= {limit}"
    );
}

#[test]
fn the_statistic_separates_fair_from_biased_counts() {
    // The tests above must be able to fail: the observed bias is far past the bound, and an
    // even or slightly uneven split is well inside it.
    let keys = vec!["foo".to_string(), "bar".to_string()];
    let biased = HashMap::from([("foo".to_string(), 1833), ("bar".to_string(), 167)]);
    assert!(chi_squared(&keys, &biased, 2000) > bound(1));
    let even = HashMap::from([("foo".to_string(), 1000), ("bar".to_string(), 1000)]);
    assert!(chi_squared(&keys, &even, 2000) < bound(1));
    let slightly = HashMap::from([("foo".to_string(), 1060), ("bar".to_string(), 940)]);
    assert!(chi_squared(&keys, &slightly, 2000) < bound(1));
}
