//! The pure rules every engine of a tenant evaluates identically.
//!
//! * Ranking: rendezvous (highest-random-weight) hashing of the election over the eligible
//!   members; the top-ranked node compiles. Adding or removing a member moves only the
//!   elections it tops.
//! * Current manifest for a (key, class): highest generation; within a generation the
//!   manifest whose compiler ranks best for that election; then the larger blob hash.
//!   It depends only on the manifests held, never on arrival order or on membership.
//! * Retirement: an artifact is retired when deopts of one of its (non-tolerated)
//!   assumptions come from at least `retire_min_nodes` distinct nodes.
//! * Re-promotion: see [`repromotion_due`].

use super::statement::{Manifest, Signed};
use super::{ClassId, CodeKey, Election};
use crate::ids::NodeKey;
use crate::tenancy::TenantId;
use std::cmp::Ordering;

/// The rendezvous score of `node` for an election: higher ranks better.
pub fn score(tenant: &TenantId, election: &Election, node: &NodeKey) -> u64 {
    score_with(&score_key(tenant, election), node)
}

/// The key of one election's scores: a candidate's score is the keyed hash of its node key
/// (one compression per candidate).
fn score_key(tenant: &TenantId, election: &Election) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("ignite v1 rendezvous key");
    h.update(&tenant.0);
    h.update(&postcard::to_allocvec(election).expect("election encodes"));
    *h.finalize().as_bytes()
}

fn score_with(key: &[u8; 32], node: &NodeKey) -> u64 {
    let h = blake3::keyed_hash(key, &node.0);
    u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"))
}

/// `candidates` ordered best first for `election` (ties, which need a hash collision, by key).
pub fn rank(tenant: &TenantId, election: &Election, candidates: impl IntoIterator<Item = NodeKey>) -> Vec<NodeKey> {
    let key = score_key(tenant, election);
    let mut scored: Vec<(u64, NodeKey)> = candidates.into_iter().map(|n| (score_with(&key, &n), n)).collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().map(|(_, n)| n).collect()
}

/// The position of `me` in [`rank`] of `candidates` (`None` when not a candidate), without
/// sorting: the number of distinct candidates ranked before it.
pub fn position(
    tenant: &TenantId,
    election: &Election,
    candidates: impl IntoIterator<Item = NodeKey>,
    me: &NodeKey,
) -> Option<usize> {
    let key = score_key(tenant, election);
    let mine = score_with(&key, me);
    let mut found = false;
    let mut before = std::collections::BTreeSet::new();
    for n in candidates {
        if n == *me {
            found = true;
            continue;
        }
        let s = score_with(&key, &n);
        if s > mine || (s == mine && n < *me) {
            before.insert(n);
        }
    }
    found.then_some(before.len())
}

/// How many of `nodes` rank before `me` in `election` (`me` itself is not counted;
/// `nodes` must be distinct). With a candidate set that changes by a few nodes, a known
/// [`position`] moves by the count among the added less the count among the removed.
pub fn count_before(tenant: &TenantId, election: &Election, me: &NodeKey, nodes: &[NodeKey]) -> usize {
    count_before_at_most(tenant, election, me, nodes, usize::MAX)
}

/// [`count_before`], counting only up to `cap`: the count if it is below `cap`, else `cap`.
/// Scoring stops at the `cap`-th node found before `me`, so a node far down a large
/// ranking scores about `cap * (1 + ln(len / cap))` nodes instead of all of them.
pub fn count_before_at_most(
    tenant: &TenantId,
    election: &Election,
    me: &NodeKey,
    nodes: &[NodeKey],
    cap: usize,
) -> usize {
    if cap == 0 || nodes.iter().all(|n| n == me) {
        return 0;
    }
    let key = score_key(tenant, election);
    let mine = score_with(&key, me);
    let mut before = 0;
    for n in nodes.iter().filter(|n| *n != me) {
        let s = score_with(&key, n);
        if s > mine || (s == mine && n < me) {
            before += 1;
            if before == cap {
                break;
            }
        }
    }
    before
}

/// The election a manifest answers.
pub fn election_of(m: &Manifest) -> Election {
    Election {
        key: m.key,
        class: m.class,
        generation: m.generation,
    }
}

/// Orders two manifests of the same (key, class): `Greater` means `a` is preferred.
pub fn compare(a: &Signed<Manifest>, b: &Signed<Manifest>) -> Ordering {
    let (ma, mb) = (&a.statement, &b.statement);
    debug_assert_eq!((ma.key, ma.class), (mb.key, mb.class));
    ma.generation
        .cmp(&mb.generation)
        .then_with(|| {
            score(&ma.tenant, &election_of(ma), &ma.compiler).cmp(&score(&mb.tenant, &election_of(mb), &mb.compiler))
        })
        .then_with(|| ma.blob_hash.cmp(&mb.blob_hash))
        .then_with(|| a.hash().cmp(&b.hash()))
}

/// Digest of a merged profile, as recorded in manifests.
pub fn profile_digest(key: &CodeKey, class: &ClassId, profile: &[(crate::CounterKey, u64)]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("ignite v1 profile digest");
    h.update(&postcard::to_allocvec(&(key, class, profile)).expect("profile encodes"));
    *h.finalize().as_bytes()
}

/// Delay before generation `generation + 1` may be elected after `generation` was retired:
/// `base * 2^(generation - 1)`, capped at `base * 1024`.
pub fn backoff_ms(base: u64, generation: u32) -> u64 {
    base.saturating_mul(1u64 << generation.saturating_sub(1).min(10))
}

/// The median latency bucket of a histogram (bucket, count), if it holds `min_samples`.
pub fn median_bucket(hist: &[(u8, u64)], min_samples: u64) -> Option<u8> {
    let total: u64 = hist.iter().map(|(_, c)| *c).sum();
    if total == 0 || total < min_samples {
        return None;
    }
    let mut seen = 0;
    for (b, c) in hist {
        seen += c;
        if seen * 2 >= total {
            return Some(*b);
        }
    }
    None
}

/// The re-promotion rule: when the current generation's median latency bucket is higher
/// (slower, buckets are powers of two) than the previous generation's, each with at least
/// `min_samples` samples, the previous code is re-published as a new generation. A key is
/// re-promoted at most once per lineage: never when the current code is itself a
/// re-promotion, so two versions cannot alternate.
pub fn repromotion_due(
    current: &Manifest,
    previous: &Manifest,
    current_latency: &[(u8, u64)],
    previous_latency: &[(u8, u64)],
    min_samples: u64,
) -> bool {
    if current.repromotes.is_some() || previous.repromotes.is_some() || previous.generation >= current.generation {
        return false;
    }
    match (
        median_bucket(current_latency, min_samples),
        median_bucket(previous_latency, min_samples),
    ) {
        (Some(cur), Some(prev)) => cur > prev,
        _ => false,
    }
}

/// The latency bucket of a duration: `floor(log2(micros))`, 0 for under 2 µs, at most 40.
pub fn latency_bucket(micros: u64) -> u8 {
    (63 - micros.max(1).leading_zeros()).min(40) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{FunctionId, MethodId, Tier};

    fn election(g: u32) -> Election {
        Election {
            key: CodeKey {
                function: FunctionId::from_deployment("f", b"code"),
                method: MethodId(1),
                tier: Tier(2),
            },
            class: ClassId([1; 16]),
            generation: g,
        }
    }

    #[test]
    fn position_is_the_place_in_the_ranking() {
        let tenant = TenantId([4; 32]);
        let nodes: Vec<NodeKey> = (0..40u8).map(|i| NodeKey([i; 32])).collect();
        for g in 1..6 {
            let r = rank(&tenant, &election(g), nodes.iter().copied());
            for (i, n) in r.iter().enumerate() {
                let dup = nodes.iter().copied().chain([*n]);
                assert_eq!(position(&tenant, &election(g), dup, n), Some(i));
            }
            assert_eq!(
                position(&tenant, &election(g), nodes.iter().copied(), &NodeKey([99; 32])),
                None
            );
        }
    }

    #[test]
    fn counting_up_to_a_cap_stops_at_the_cap_and_is_exact_below_it() {
        let tenant = TenantId([5; 32]);
        let nodes: Vec<NodeKey> = (0..60u8).map(|i| NodeKey([i; 32])).collect();
        let r = rank(&tenant, &election(3), nodes.iter().copied());
        for (i, me) in r.iter().enumerate() {
            assert_eq!(count_before(&tenant, &election(3), me, &nodes), i);
            for cap in [0, 1, 4, i, i + 1, 100] {
                assert_eq!(
                    count_before_at_most(&tenant, &election(3), me, &nodes, cap),
                    i.min(cap),
                    "position {i}, cap {cap}"
                );
            }
        }
        // The ranking is by score, best first.
        assert!(
            r.windows(2)
                .all(|w| score(&tenant, &election(3), &w[0]) >= score(&tenant, &election(3), &w[1]))
        );
    }

    #[test]
    fn ranking_is_a_pure_function_and_moves_little_with_membership() {
        let tenant = TenantId([7; 32]);
        let nodes: Vec<NodeKey> = (0..50u8).map(|i| NodeKey([i; 32])).collect();
        let r1 = rank(&tenant, &election(1), nodes.iter().copied());
        let mut rev = nodes.clone();
        rev.reverse();
        assert_eq!(r1, rank(&tenant, &election(1), rev));
        // Removing a member that is not the top keeps the top.
        let without: Vec<NodeKey> = nodes.iter().copied().filter(|n| *n != r1[5]).collect();
        assert_eq!(rank(&tenant, &election(1), without)[0], r1[0]);
        // Another generation is another election: usually another top.
        let tops: std::collections::BTreeSet<NodeKey> = (1..20)
            .map(|g| rank(&tenant, &election(g), nodes.iter().copied())[0])
            .collect();
        assert!(tops.len() > 5, "{} distinct tops", tops.len());
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff_ms(1000, 1), 1000);
        assert_eq!(backoff_ms(1000, 2), 2000);
        assert_eq!(backoff_ms(1000, 3), 4000);
        assert_eq!(backoff_ms(1000, 60), 1000 << 10);
    }

    #[test]
    fn latency_buckets_and_median() {
        assert_eq!(latency_bucket(0), 0);
        assert_eq!(latency_bucket(1), 0);
        assert_eq!(latency_bucket(1024), 10);
        assert_eq!(latency_bucket(u64::MAX), 40);
        assert_eq!(median_bucket(&[(3, 10), (5, 11)], 1), Some(5));
        assert_eq!(median_bucket(&[(3, 11), (5, 10)], 1), Some(3));
        assert_eq!(median_bucket(&[(3, 11), (5, 10)], 100), None);
    }
}
