//! The network model: peers spread over zones, log-normal one-way latency per zone pair,
//! loss, duplication, reordering jitter, timed partitions and, optionally, a bounded uplink
//! per peer on which large sends queue.
//!
//! All times are virtual microseconds. Every random draw comes from the [`Rng`] the caller
//! passes, so a run is reproducible from its seed.

use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// Parameters of the network model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetConfig {
    /// Number of zones (regions / data centres) peers are spread over. At least 1.
    pub zones: u32,
    /// Median one-way latency between two peers of the same zone, in µs (default 1 ms).
    pub in_zone_median_us: f64,
    /// Median one-way latency between two peers of different zones, in µs (default 20 ms).
    pub cross_zone_median_us: f64,
    /// Log-normal shape of every latency draw: a latency is `median * exp(sigma * N(0,1))`.
    ///
    /// The default 0.3 gives a moderate right tail: the 5th–95th percentiles are about
    /// 0.61× and 1.64× the median and the mean is `e^(σ²/2) ≈ 1.046×` the median, which is
    /// the shape usually seen for one-way delay on a lightly loaded path (a floor set by
    /// distance plus queueing noise) without the heavy tail of congested links. Use 0 for
    /// constant latencies.
    pub sigma: f64,
    /// Probability that a message is lost (default 0).
    pub loss: f64,
    /// Probability that a delivered message is delivered twice (default 0); the copy takes
    /// its own latency draw.
    pub duplicate: f64,
    /// Extra uniform delay in `[0, reorder_jitter_us)` added to each delivery, which
    /// reorders messages sent close together (default 0: none).
    pub reorder_jitter_us: f64,
    /// Uplink bandwidth of every peer in bytes per second, `None` for unbounded (default).
    /// When bounded, each send first waits for the sender's earlier sends to leave and then
    /// takes `bytes / bandwidth` to serialize.
    pub uplink_bytes_per_s: Option<f64>,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            zones: 3,
            in_zone_median_us: 1_000.0,
            cross_zone_median_us: 20_000.0,
            sigma: 0.3,
            loss: 0.0,
            duplicate: 0.0,
            reorder_jitter_us: 0.0,
            uplink_bytes_per_s: None,
        }
    }
}

/// The outcome of one send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The network lost the message.
    Lost,
    /// A partition between sender and receiver was in force at send time: dropped.
    Blocked,
    /// Arrival time(s) in µs, ascending: one, or two when the network duplicated it.
    At(Vec<u64>),
}

/// A set of peers, by zone or by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerSet {
    /// Every peer.
    All,
    /// The peers whose zone is in the list.
    Zones(Vec<u32>),
    /// The peers listed.
    Peers(Vec<u32>),
}

impl PeerSet {
    /// Whether `peer` (in zone `zone`) is in the set.
    pub fn contains(&self, peer: u32, zone: u32) -> bool {
        match self {
            PeerSet::All => true,
            PeerSet::Zones(zones) => zones.contains(&zone),
            PeerSet::Peers(peers) => peers.contains(&peer),
        }
    }
}

/// A timed network partition: messages sent from a peer of `from` to a peer of `to` while
/// `start_us <= now < heal_us` are dropped ([`Delivery::Blocked`]); with `both_ways` the
/// reverse direction is cut too. Messages already in flight when it starts still arrive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    /// Senders cut off.
    pub from: PeerSet,
    /// Receivers cut off.
    pub to: PeerSet,
    /// First µs of the cut (inclusive).
    pub start_us: u64,
    /// First µs after the cut (exclusive); `u64::MAX` for one that never heals.
    pub heal_us: u64,
    /// Whether `to -> from` is cut as well.
    pub both_ways: bool,
}

impl Partition {
    /// Whether this partition drops a message sent at `now_us` from `from` (in zone
    /// `from_zone`) to `to` (in zone `to_zone`).
    pub fn blocks(&self, now_us: u64, from: u32, from_zone: u32, to: u32, to_zone: u32) -> bool {
        if now_us < self.start_us || now_us >= self.heal_us {
            return false;
        }
        (self.from.contains(from, from_zone) && self.to.contains(to, to_zone))
            || (self.both_ways && self.from.contains(to, to_zone) && self.to.contains(from, from_zone))
    }
}

/// The network: configuration, the zone of each peer, partitions and uplink queues.
#[derive(Debug, Clone)]
pub struct Net {
    config: NetConfig,
    /// Zone of peers `0..zone.len()`; peers beyond use `peer % zones`.
    zone: Vec<u32>,
    partitions: Vec<Partition>,
    /// Per-peer time (µs) at which the uplink is free again; grown on demand.
    uplink_busy_until: Vec<u64>,
}

impl Net {
    /// A network of `peers` peers with `config`; peer `p` is in zone `p % zones` until
    /// [`Net::set_zone`] moves it. A `zones` of 0 is treated as 1.
    pub fn new(mut config: NetConfig, peers: u32) -> Net {
        config.zones = config.zones.max(1);
        let zones = config.zones;
        Net {
            zone: (0..peers).map(|p| p % zones).collect(),
            config,
            partitions: Vec::new(),
            uplink_busy_until: Vec::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &NetConfig {
        &self.config
    }

    /// The zone of `peer`.
    pub fn zone_of(&self, peer: u32) -> u32 {
        self.zone
            .get(peer as usize)
            .copied()
            .unwrap_or(peer % self.config.zones)
    }

    /// Moves `peer` to `zone` (which must be below `config.zones`).
    ///
    /// # Panics
    /// If `zone >= config.zones`.
    pub fn set_zone(&mut self, peer: u32, zone: u32) {
        assert!(
            zone < self.config.zones,
            "zone {zone} out of range (zones = {})",
            self.config.zones
        );
        let zones = self.config.zones;
        let idx = peer as usize;
        if idx >= self.zone.len() {
            let start = self.zone.len() as u32;
            self.zone.extend((start..=peer).map(|p| p % zones));
        }
        self.zone[idx] = zone;
    }

    /// Adds a partition (it applies to sends whose time falls in its window).
    pub fn add_partition(&mut self, partition: Partition) {
        self.partitions.push(partition);
    }

    /// The partitions added so far.
    pub fn partitions(&self) -> &[Partition] {
        &self.partitions
    }

    /// Whether a message sent at `now_us` from `from` to `to` is cut by a partition.
    pub fn is_blocked(&self, now_us: u64, from: u32, to: u32) -> bool {
        if self.partitions.is_empty() {
            return false;
        }
        let (fz, tz) = (self.zone_of(from), self.zone_of(to));
        self.partitions.iter().any(|p| p.blocks(now_us, from, fz, to, tz))
    }

    /// The time (µs) at which `peer`'s uplink is free again (0 if it never sent or the
    /// uplink is unbounded).
    pub fn uplink_busy_until(&self, peer: u32) -> u64 {
        self.uplink_busy_until.get(peer as usize).copied().unwrap_or(0)
    }

    /// The median one-way latency (µs) between zones `a` and `b`.
    pub fn median_between_zones(&self, a: u32, b: u32) -> f64 {
        if a == b {
            self.config.in_zone_median_us
        } else {
            self.config.cross_zone_median_us
        }
    }

    /// One propagation delay draw (µs, before rounding) for a zone pair: log-normal latency
    /// plus reordering jitter.
    fn draw_latency(&self, from_zone: u32, to_zone: u32, rng: &mut Rng) -> f64 {
        let median = self.median_between_zones(from_zone, to_zone);
        let mut latency = if self.config.sigma > 0.0 {
            rng.lognormal_median(median, self.config.sigma)
        } else {
            median
        };
        if self.config.reorder_jitter_us > 0.0 {
            latency += rng.uniform(0.0, self.config.reorder_jitter_us);
        }
        latency.max(0.0)
    }

    /// Sends `bytes` from `from` to `to` at `now_us` and returns what happens to it.
    ///
    /// In order: with a bounded uplink the message queues behind the sender's earlier sends
    /// and takes `bytes / bandwidth` to leave (`busy_until = max(now, busy_until) +
    /// bytes / bw`; the sender pays this even if the message is then dropped); a partition
    /// in force at `now_us` gives [`Delivery::Blocked`]; the message is lost with
    /// probability `loss`; otherwise it arrives after a log-normal latency for the zone pair
    /// plus uniform jitter, at least 1 µs after it left, and with probability `duplicate`
    /// a second copy arrives after its own latency draw. A send to oneself arrives at
    /// `now_us` (loopback, no loss). Draws for zero probabilities, zero jitter or zero sigma
    /// are skipped, so enabling one effect does not shift the others' streams needlessly.
    pub fn delay_us(&mut self, now_us: u64, from: u32, to: u32, bytes: u64, rng: &mut Rng) -> Delivery {
        if from == to {
            return Delivery::At(vec![now_us]);
        }
        let depart = match self.config.uplink_bytes_per_s {
            Some(bw) if bw > 0.0 && bw.is_finite() => {
                let idx = from as usize;
                if idx >= self.uplink_busy_until.len() {
                    self.uplink_busy_until.resize(idx + 1, 0);
                }
                let serialize_us = (bytes as f64 * 1e6 / bw).ceil() as u64;
                let busy = &mut self.uplink_busy_until[idx];
                *busy = now_us.max(*busy).saturating_add(serialize_us);
                *busy
            }
            _ => now_us,
        };
        if self.is_blocked(now_us, from, to) {
            return Delivery::Blocked;
        }
        if self.config.loss > 0.0 && rng.chance(self.config.loss) {
            return Delivery::Lost;
        }
        let (fz, tz) = (self.zone_of(from), self.zone_of(to));
        let arrive = |latency: f64| depart.saturating_add((latency.round() as u64).max(1));
        let first = arrive(self.draw_latency(fz, tz, rng));
        if self.config.duplicate > 0.0 && rng.chance(self.config.duplicate) {
            let second = arrive(self.draw_latency(fz, tz, rng));
            Delivery::At(vec![first.min(second), first.max(second)])
        } else {
            Delivery::At(vec![first])
        }
    }

    /// The median one-way latency (µs) of a message between two distinct peers chosen
    /// uniformly, i.e. of the mixture over ordered zone pairs weighted by how the peers are
    /// spread (`n_a * n_b` pairs for `a != b`, `n_a * (n_a - 1)` within a zone), including
    /// the log-normal spread and the reordering jitter, excluding uplink queueing. Used in
    /// the lower bound `hops * median_link_us` of propagation time.
    pub fn median_link_us(&self) -> f64 {
        let zones = self.config.zones as usize;
        let mut count = vec![0f64; zones];
        if self.zone.is_empty() {
            count.iter_mut().for_each(|c| *c = 1.0);
        } else {
            for &z in &self.zone {
                count[z as usize] += 1.0;
            }
        }
        // Weight of in-zone and cross-zone pairs.
        let total: f64 = count.iter().sum();
        let in_zone: f64 = if self.zone.is_empty() {
            // No peers: zones equally likely, pairs independent.
            count.iter().map(|c| c * c).sum()
        } else {
            count.iter().map(|c| c * (c - 1.0)).sum()
        };
        let cross: f64 = total * total - count.iter().map(|c| c * c).sum::<f64>();
        let (w_in, w_cross) = if in_zone + cross > 0.0 {
            (in_zone / (in_zone + cross), cross / (in_zone + cross))
        } else {
            (1.0, 0.0)
        };
        let c = &self.config;
        let sigma = c.sigma.max(0.0);
        let lognormal_cdf = |x: f64, median: f64| -> f64 {
            if x <= 0.0 {
                0.0
            } else if sigma == 0.0 {
                if x >= median { 1.0 } else { 0.0 }
            } else {
                normal_cdf((x / median).ln() / sigma)
            }
        };
        let latency_cdf =
            |x: f64| w_in * lognormal_cdf(x, c.in_zone_median_us) + w_cross * lognormal_cdf(x, c.cross_zone_median_us);
        // Convolve with the uniform jitter by averaging over midpoints.
        let jitter = c.reorder_jitter_us.max(0.0);
        let cdf = |x: f64| {
            if jitter == 0.0 {
                return latency_cdf(x);
            }
            const STEPS: usize = 256;
            (0..STEPS)
                .map(|i| latency_cdf(x - jitter * (i as f64 + 0.5) / STEPS as f64))
                .sum::<f64>()
                / STEPS as f64
        };
        // Bisection on the CDF for 0.5.
        let mut lo = 0.0;
        let mut hi = c.in_zone_median_us.max(c.cross_zone_median_us).max(1.0) * (8.0 * sigma).exp() + jitter;
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if cdf(mid) < 0.5 {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        hi
    }
}

/// The standard normal CDF, via an `erfc` approximation with relative error below 1.2e-7
/// (Numerical Recipes' Chebyshev fit).
fn normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

/// Complementary error function (Numerical Recipes `erfcc`, |error| < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn median(mut v: Vec<u64>) -> f64 {
        v.sort_unstable();
        v[v.len() / 2] as f64
    }

    fn arrivals(d: Delivery) -> Vec<u64> {
        match d {
            Delivery::At(v) => v,
            other => panic!("expected delivery, got {other:?}"),
        }
    }

    #[test]
    fn default_config_and_zones() {
        let net = Net::new(NetConfig::default(), 10);
        assert_eq!(net.config().zones, 3);
        assert_eq!(net.zone_of(0), 0);
        assert_eq!(net.zone_of(4), 1);
        assert_eq!(net.zone_of(11), 2); // beyond the table: modulo
        let mut net = net;
        net.set_zone(4, 2);
        assert_eq!(net.zone_of(4), 2);
        net.set_zone(20, 0);
        assert_eq!(net.zone_of(20), 0);
        assert_eq!(net.zone_of(19), 1);
    }

    #[test]
    fn latency_medians_match_config() {
        let mut net = Net::new(NetConfig::default(), 6);
        let mut rng = Rng::new(1);
        let n = 40_001;
        // Peers 0 and 3 share zone 0; peers 0 and 1 are in zones 0 and 1.
        let in_zone: Vec<u64> = (0..n)
            .map(|_| arrivals(net.delay_us(0, 0, 3, 100, &mut rng))[0])
            .collect();
        let cross: Vec<u64> = (0..n)
            .map(|_| arrivals(net.delay_us(0, 0, 1, 100, &mut rng))[0])
            .collect();
        let (mi, mc) = (median(in_zone), median(cross));
        assert!((mi / 1_000.0 - 1.0).abs() < 0.03, "{mi}");
        assert!((mc / 20_000.0 - 1.0).abs() < 0.03, "{mc}");
    }

    #[test]
    fn constant_latency_with_zero_sigma() {
        let config = NetConfig {
            sigma: 0.0,
            ..NetConfig::default()
        };
        let mut net = Net::new(config, 3);
        let mut rng = Rng::new(2);
        assert_eq!(net.delay_us(500, 0, 1, 1, &mut rng), Delivery::At(vec![20_500]));
        assert_eq!(net.delay_us(500, 1, 1, 1, &mut rng), Delivery::At(vec![500]));
    }

    #[test]
    fn loss_rate_matches_config() {
        let config = NetConfig {
            loss: 0.1,
            ..NetConfig::default()
        };
        let mut net = Net::new(config, 2);
        let mut rng = Rng::new(3);
        let n = 100_000;
        let lost = (0..n)
            .filter(|_| net.delay_us(0, 0, 1, 10, &mut rng) == Delivery::Lost)
            .count();
        let rate = lost as f64 / n as f64;
        assert!((rate - 0.1).abs() < 0.005, "{rate}");
    }

    #[test]
    fn duplication_gives_two_ordered_arrivals() {
        let config = NetConfig {
            duplicate: 0.2,
            ..NetConfig::default()
        };
        let mut net = Net::new(config, 2);
        let mut rng = Rng::new(4);
        let n = 50_000;
        let mut dups = 0;
        for _ in 0..n {
            let a = arrivals(net.delay_us(0, 0, 1, 10, &mut rng));
            if a.len() == 2 {
                dups += 1;
                assert!(a[0] <= a[1]);
            }
        }
        let rate = f64::from(dups) / f64::from(n);
        assert!((rate - 0.2).abs() < 0.01, "{rate}");
    }

    #[test]
    fn jitter_reorders() {
        let config = NetConfig {
            sigma: 0.0,
            reorder_jitter_us: 5_000.0,
            ..NetConfig::default()
        };
        let mut net = Net::new(config, 3);
        let mut rng = Rng::new(5);
        let mut reordered = 0;
        let mut last = 0;
        for i in 0..1000u64 {
            let at = arrivals(net.delay_us(i * 100, 0, 3, 10, &mut rng))[0];
            assert!((1_000 + i * 100..=6_000 + i * 100).contains(&at));
            if at < last {
                reordered += 1;
            }
            last = at;
        }
        assert!(reordered > 100, "{reordered}");
    }

    #[test]
    fn partition_blocks_exactly_in_window_and_direction() {
        let mut net = Net::new(NetConfig::default(), 6);
        net.add_partition(Partition {
            from: PeerSet::Zones(vec![0]),
            to: PeerSet::Zones(vec![1]),
            start_us: 1_000,
            heal_us: 2_000,
            both_ways: false,
        });
        let mut rng = Rng::new(6);
        // Peer 0 is in zone 0, peer 1 in zone 1, peer 2 in zone 2.
        assert!(matches!(net.delay_us(999, 0, 1, 1, &mut rng), Delivery::At(_)));
        assert_eq!(net.delay_us(1_000, 0, 1, 1, &mut rng), Delivery::Blocked);
        assert_eq!(net.delay_us(1_999, 3, 4, 1, &mut rng), Delivery::Blocked);
        assert!(matches!(net.delay_us(2_000, 0, 1, 1, &mut rng), Delivery::At(_)));
        // Other direction and other zones are unaffected.
        assert!(matches!(net.delay_us(1_500, 1, 0, 1, &mut rng), Delivery::At(_)));
        assert!(matches!(net.delay_us(1_500, 0, 2, 1, &mut rng), Delivery::At(_)));
        assert!(matches!(net.delay_us(1_500, 0, 3, 1, &mut rng), Delivery::At(_)));

        net.add_partition(Partition {
            from: PeerSet::Peers(vec![5]),
            to: PeerSet::All,
            start_us: 0,
            heal_us: u64::MAX,
            both_ways: true,
        });
        assert_eq!(net.delay_us(10, 5, 0, 1, &mut rng), Delivery::Blocked);
        assert_eq!(net.delay_us(10, 0, 5, 1, &mut rng), Delivery::Blocked);
        assert!(!net.is_blocked(10, 0, 4));
        assert_eq!(net.partitions().len(), 2);
    }

    #[test]
    fn bandwidth_queues_back_to_back_sends() {
        let config = NetConfig {
            sigma: 0.0,
            uplink_bytes_per_s: Some(1_000_000.0),
            ..NetConfig::default()
        };
        let mut net = Net::new(config, 6);
        let mut rng = Rng::new(7);
        // 1 MB at 1 MB/s: 1 s each; in-zone latency 1 ms.
        let a = arrivals(net.delay_us(0, 0, 3, 1_000_000, &mut rng));
        let b = arrivals(net.delay_us(0, 0, 3, 1_000_000, &mut rng));
        assert_eq!(a, vec![1_001_000]);
        assert_eq!(b, vec![2_001_000]);
        assert_eq!(net.uplink_busy_until(0), 2_000_000);
        // Another sender's uplink is independent.
        assert_eq!(arrivals(net.delay_us(0, 1, 4, 1_000, &mut rng)), vec![2_000]);
        // After the queue drains, a send starts at once.
        assert_eq!(
            arrivals(net.delay_us(5_000_000, 0, 3, 500_000, &mut rng)),
            vec![5_501_000]
        );
    }

    #[test]
    fn deterministic() {
        let config = NetConfig {
            loss: 0.05,
            duplicate: 0.05,
            reorder_jitter_us: 300.0,
            uplink_bytes_per_s: Some(10e6),
            ..NetConfig::default()
        };
        let run = || {
            let mut net = Net::new(config.clone(), 100);
            let mut rng = Rng::new(99);
            (0..2_000u64)
                .map(|i| {
                    let from = (i * 7 % 100) as u32;
                    let to = (i * 13 % 100) as u32;
                    net.delay_us(i * 50, from, to, 1_000 + i, &mut rng)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn median_link_matches_sampling() {
        let peers = 3_000;
        for config in [
            NetConfig::default(),
            NetConfig {
                zones: 1,
                ..NetConfig::default()
            },
            NetConfig {
                zones: 5,
                reorder_jitter_us: 10_000.0,
                ..NetConfig::default()
            },
        ] {
            let mut net = Net::new(config, peers);
            let mut rng = Rng::new(8);
            let mut pick = Rng::new(9);
            let mut samples = Vec::new();
            while samples.len() < 40_001 {
                let a = pick.below(u64::from(peers)) as u32;
                let b = pick.below(u64::from(peers)) as u32;
                if a != b {
                    samples.push(arrivals(net.delay_us(0, a, b, 1, &mut rng))[0]);
                }
            }
            let empirical = median(samples);
            let model = net.median_link_us();
            assert!(
                (model / empirical - 1.0).abs() < 0.03,
                "model {model} vs empirical {empirical}"
            );
        }
        let one_zone = Net::new(
            NetConfig {
                zones: 1,
                ..NetConfig::default()
            },
            10,
        );
        assert!((one_zone.median_link_us() - 1_000.0).abs() < 0.01);
    }

    #[test]
    fn normal_cdf_values() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(1.0) - 0.841_344_746).abs() < 1e-6);
        assert!((normal_cdf(-1.959_964) - 0.025).abs() < 1e-6);
    }
}
