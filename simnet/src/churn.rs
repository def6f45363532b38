//! Churn: peers that crash and restart (from their last snapshot, or without state as a
//! new incarnation), leave gracefully, or join late. A plan is drawn from the seed before
//! the run; the scenario carries it out.

use crate::rng::Rng;

/// How much churn a run has.
#[derive(Clone, Debug, PartialEq)]
pub struct ChurnConfig {
    /// Share of peers that crash once (at least 2 when there are 6 peers or more: one of
    /// each restart kind).
    pub crash_fraction: f64,
    /// Share of the crashing peers that restart from their last snapshot; the others
    /// restart without state, as a new incarnation.
    pub snapshot_share: f64,
    /// Downtime after a crash, drawn uniformly in this range, ms.
    pub down_ms: (u64, u64),
    /// Share of peers that leave gracefully (publish, unsubscribe, stop) and do not return.
    pub leave_fraction: f64,
    /// Share of peers that join late (not present when traffic starts).
    pub join_fraction: f64,
}

impl Default for ChurnConfig {
    /// 10% of peers crash (half restart from a snapshot), down 5–30 s; 5% leave; 5% join
    /// late.
    fn default() -> ChurnConfig {
        ChurnConfig {
            crash_fraction: 0.10,
            snapshot_share: 0.5,
            down_ms: (5_000, 30_000),
            leave_fraction: 0.05,
            join_fraction: 0.05,
        }
    }
}

/// What happens to a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChurnKind {
    /// Crashes (nothing flushed) and restarts `down_us` later.
    Crash {
        /// Restart from the last snapshot (same incarnation) rather than without state.
        snapshot: bool,
        /// Downtime, µs.
        down_us: u64,
    },
    /// Leaves gracefully for good.
    Leave,
    /// Joins at this time (absent before).
    Join,
}

/// One churn event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChurnEvent {
    /// The peer.
    pub peer: u32,
    /// When, µs of virtual time.
    pub at_us: u64,
    /// What.
    pub kind: ChurnKind,
}

fn count(peers: u32, fraction: f64, min: u32) -> u32 {
    if fraction <= 0.0 {
        return 0;
    }
    let n = (f64::from(peers) * fraction).round() as u32;
    n.max(min)
}

/// Draws a plan for `peers` peers: distinct peers per event, times uniform in
/// `[from_us, to_us)`, sorted by time (ties by peer).
pub fn plan(peers: u32, c: &ChurnConfig, from_us: u64, to_us: u64, rng: &mut Rng) -> Vec<ChurnEvent> {
    let mut order: Vec<u32> = (0..peers).collect();
    // Fisher–Yates.
    for i in (1..order.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    let crashes = if peers >= 6 {
        count(peers, c.crash_fraction, 2)
    } else {
        0
    };
    let leaves = if peers >= 6 {
        count(peers, c.leave_fraction, 1)
    } else {
        0
    };
    let joins = if peers >= 6 {
        count(peers, c.join_fraction, 1)
    } else {
        0
    };
    // Keep most of the fleet untouched.
    let budget = peers / 2;
    let crashes = crashes.min(budget);
    let leaves = leaves.min(budget - crashes);
    let joins = joins.min(budget - crashes - leaves);
    let span = to_us.saturating_sub(from_us).max(1);
    let mut out = Vec::new();
    let mut it = order.into_iter();
    let snap_count = (f64::from(crashes) * c.snapshot_share).round() as u32;
    for i in 0..crashes {
        let peer = it.next().expect("enough peers");
        let lo = c.down_ms.0.min(c.down_ms.1) * 1_000;
        let hi = c.down_ms.0.max(c.down_ms.1) * 1_000;
        let down_us = lo + rng.below(hi - lo + 1);
        out.push(ChurnEvent {
            peer,
            at_us: from_us + rng.below(span),
            kind: ChurnKind::Crash {
                snapshot: i < snap_count,
                down_us,
            },
        });
    }
    for (n, kind) in [(leaves, ChurnKind::Leave), (joins, ChurnKind::Join)] {
        for _ in 0..n {
            let peer = it.next().expect("enough peers");
            out.push(ChurnEvent {
                peer,
                at_us: from_us + rng.below(span),
                kind,
            });
        }
    }
    out.sort_by_key(|e| (e.at_us, e.peer));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_deterministic_distinct_and_in_the_window() {
        let c = ChurnConfig::default();
        let a = plan(100, &c, 1_000, 9_000_000, &mut Rng::new(3));
        let b = plan(100, &c, 1_000, 9_000_000, &mut Rng::new(3));
        assert_eq!(a, b);
        assert_ne!(a, plan(100, &c, 1_000, 9_000_000, &mut Rng::new(4)));
        let mut peers: Vec<u32> = a.iter().map(|e| e.peer).collect();
        peers.sort_unstable();
        peers.dedup();
        assert_eq!(peers.len(), a.len(), "one event per peer");
        assert_eq!(a.len(), 10 + 5 + 5);
        assert!(a.iter().all(|e| (1_000..9_000_000).contains(&e.at_us)));
        let snap = a
            .iter()
            .filter(|e| matches!(e.kind, ChurnKind::Crash { snapshot: true, .. }))
            .count();
        assert_eq!(snap, 5);
        assert!(a.windows(2).all(|w| w[0].at_us <= w[1].at_us));
    }

    #[test]
    fn small_fleets_get_one_of_each_and_tiny_ones_none() {
        let c = ChurnConfig::default();
        let a = plan(12, &c, 0, 1_000, &mut Rng::new(1));
        assert!(
            a.iter()
                .any(|e| matches!(e.kind, ChurnKind::Crash { snapshot: true, .. }))
        );
        assert!(
            a.iter()
                .any(|e| matches!(e.kind, ChurnKind::Crash { snapshot: false, .. }))
        );
        assert!(a.iter().any(|e| e.kind == ChurnKind::Leave));
        assert!(a.iter().any(|e| e.kind == ChurnKind::Join));
        assert!(plan(4, &c, 0, 1_000, &mut Rng::new(1)).is_empty());
    }
}
