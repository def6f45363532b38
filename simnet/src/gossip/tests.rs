//! Tests of the mesh model, driven by a small FIFO network.

use std::collections::VecDeque;

use super::*;

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A send in flight: its eager-push hop count and whether it answers an IWANT.
struct Item {
    send: Send,
    hop: u32,
    iwant_reply: bool,
}

/// What one drain of the network observed.
#[derive(Default)]
struct Stats {
    /// Deliveries per peer.
    delivered: Vec<u32>,
    /// Hop count at which each peer delivered.
    hop: Vec<u32>,
    /// Publish sends processed (including dropped ones).
    publishes: u64,
    /// All sends processed.
    sends: u64,
}

const TOPIC: TopicIdx = 7;

struct Net {
    g: Gossip,
    rng: Rng,
    now: u64,
    queue: VecDeque<Item>,
    /// Every send, in order.
    log: Vec<Send>,
    n: u32,
}

impl Net {
    fn new(n: u32, config: GossipConfig, seed: u64) -> Net {
        Net {
            g: Gossip::new(config, n),
            rng: Rng(seed),
            now: 0,
            queue: VecDeque::new(),
            log: Vec::new(),
            n,
        }
    }

    fn push(&mut self, sends: Vec<Send>) {
        self.queue.extend(sends.into_iter().map(|send| Item {
            send,
            hop: 1,
            iwant_reply: false,
        }));
    }

    /// Delivers everything in FIFO order, dropping the sends `drop` selects.
    fn drain(&mut self, drop: impl Fn(&Item) -> bool) -> Stats {
        let mut st = Stats {
            delivered: vec![0; self.n as usize],
            hop: vec![0; self.n as usize],
            ..Stats::default()
        };
        while let Some(item) = self.queue.pop_front() {
            self.log.push(item.send.clone());
            st.sends += 1;
            st.publishes += u64::from(item.send.wire.is_publish());
            if drop(&item) {
                continue;
            }
            let Net { g, rng, now, .. } = self;
            let to = item.send.to;
            let r = g.receive(*now, to, &item.send, &mut || rng.next());
            if r.deliver.is_some() {
                st.delivered[to as usize] += 1;
                st.hop[to as usize] = item.hop;
            }
            let iwant_reply = matches!(item.send.wire, Wire::IWant { .. });
            self.queue.extend(r.sends.into_iter().map(|send| Item {
                send,
                hop: item.hop + 1,
                iwant_reply,
            }));
        }
        st
    }

    fn subscribe_all(&mut self) {
        for p in 0..self.n {
            let Net { g, rng, now, .. } = self;
            let sends = g.subscribe(*now, p, TOPIC, &mut || rng.next());
            self.push(sends);
            self.drain(|_| false);
        }
    }

    /// One second later, every peer's heartbeat, then delivery of everything.
    fn heartbeats(&mut self, drop: impl Fn(&Item) -> bool) -> Stats {
        self.now += 1_000_000;
        for p in 0..self.n {
            let Net { g, rng, now, .. } = self;
            let sends = g.heartbeat(*now, p, &mut || rng.next());
            self.push(sends);
        }
        self.drain(drop)
    }

    fn publish(&mut self, from: PeerIdx, id: MsgId, drop: impl Fn(&Item) -> bool) -> Stats {
        let Net { g, rng, now, .. } = self;
        let sends = g.publish(*now, from, TOPIC, id, &mut || rng.next());
        self.push(sends);
        self.drain(drop)
    }

    /// Subscribes everybody and runs `rounds` heartbeat rounds.
    fn built(n: u32, config: GossipConfig, seed: u64, rounds: usize) -> Net {
        let mut net = Net::new(n, config, seed);
        net.subscribe_all();
        for _ in 0..rounds {
            net.heartbeats(|_| false);
        }
        net
    }

    fn mesh_sizes(&self) -> Vec<usize> {
        (0..self.n)
            .filter(|&p| self.g.is_up(p))
            .map(|p| self.g.mesh(p, TOPIC).count())
            .collect()
    }

    fn assert_symmetric(&self) {
        for p in 0..self.n {
            for q in self.g.mesh(p, TOPIC) {
                assert!(
                    self.g.mesh(q, TOPIC).any(|x| x == p),
                    "link {p} -> {q} is not symmetric"
                );
            }
        }
    }
}

fn mesh_only() -> GossipConfig {
    GossipConfig {
        flood_publish: false,
        ..GossipConfig::default()
    }
}

#[test]
fn gossip_defaults_match_rust_libp2p() {
    let c = GossipConfig::default();
    assert_eq!(
        (c.mesh_n, c.mesh_n_low, c.mesh_n_high, c.mesh_outbound_min),
        (6, 5, 12, 2)
    );
    assert_eq!((c.gossip_lazy, c.gossip_factor), (6, 0.25));
    assert_eq!(
        (c.heartbeat_interval_us, c.history_length, c.history_gossip),
        (1_000_000, 5, 3)
    );
    assert_eq!(
        (c.duplicate_cache_time_us, c.max_ihave_length, c.fanout_ttl_us),
        (60_000_000, 5000, 60_000_000)
    );
    assert!(c.flood_publish);
    assert!(c.validate().is_ok());
    assert!(
        GossipConfig {
            mesh_n_low: 7,
            ..c.clone()
        }
        .validate()
        .is_err()
    );
    assert!(GossipConfig { history_gossip: 6, ..c }.validate().is_err());
}

#[test]
fn gossip_meshes_within_bounds_and_symmetric() {
    let net = Net::built(1000, GossipConfig::default(), 1, 5);
    let sizes = net.mesh_sizes();
    let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
    let mean = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
    eprintln!("1000 peers, 5 heartbeats: mesh sizes min {min} max {max} mean {mean:.2}");
    assert!(*min >= 5 && *max <= 12, "mesh sizes {min}..={max}");
    net.assert_symmetric();
}

#[test]
fn gossip_publish_reaches_everyone_once() {
    for (name, config) in [
        ("mesh only", mesh_only()),
        ("flood publish (default)", GossipConfig::default()),
    ] {
        let mut net = Net::built(1000, config, 2, 5);
        let st = net.publish(17, 0, |_| false);
        assert_eq!(st.delivered[17], 0, "the publisher does not deliver its own message");
        for p in (0..1000).filter(|&p| p != 17) {
            assert_eq!(st.delivered[p as usize], 1, "peer {p}");
        }
        let hops = st.hop.iter().max().unwrap();
        let per_peer = st.publishes as f64 / 1000.0;
        eprintln!(
            "{name}: 1000 peers, max hops {hops}, {} publish sends ({per_peer:.2} per peer)",
            st.publishes
        );
        assert!(*hops <= 8, "{hops} hops");
        assert!((4.0..=12.0).contains(&per_peer), "{per_peer} sends per peer");
        // Duplicates stay dropped: another round of heartbeats delivers nothing new.
        let again = net.heartbeats(|_| false);
        assert!(again.delivered.iter().all(|&d| d == 0));
    }
}

#[test]
fn gossip_ihave_iwant_recovers_dropped_eager_push() {
    let victim: PeerIdx = 123;
    let mut net = Net::built(1000, mesh_only(), 3, 5);
    let drop_eager = move |item: &Item| item.send.to == victim && item.send.wire.is_publish() && !item.iwant_reply;
    let st = net.publish(5, 0, drop_eager);
    assert_eq!(st.delivered[victim as usize], 0);
    assert!(
        st.delivered
            .iter()
            .enumerate()
            .all(|(p, &d)| d == 1 || p == victim as usize || p == 5)
    );
    let mut recovered_after = None;
    for round in 1..=3 {
        let st = net.heartbeats(drop_eager);
        if st.delivered[victim as usize] == 1 {
            recovered_after = Some(round);
            break;
        }
    }
    eprintln!("victim recovered through IHAVE/IWANT after {recovered_after:?} heartbeat round(s)");
    assert!(recovered_after.is_some(), "the victim never got the message");
    // Nobody asked for it twice: the promise holds while the message is being fetched.
    let iwants = net
        .log
        .iter()
        .filter(|s| s.from == victim && matches!(&s.wire, Wire::IWant { ids } if ids.contains(&0)))
        .count();
    assert_eq!(iwants, 1);
}

#[test]
fn gossip_is_deterministic() {
    let run = |seed| {
        let mut net = Net::built(300, GossipConfig::default(), seed, 3);
        net.publish(1, 0, |_| false);
        net.publish(2, 1, |_| false);
        net.heartbeats(|_| false);
        net.log
    };
    let a = run(9);
    assert!(!a.is_empty());
    assert_eq!(a, run(9));
    assert_ne!(a, run(10));
}

#[test]
fn gossip_crashed_peer_leaves_meshes() {
    let mut net = Net::built(1000, mesh_only(), 4, 5);
    let dead: PeerIdx = 42;
    let neighbours: Vec<PeerIdx> = net.g.mesh(dead, TOPIC).collect();
    assert!(!neighbours.is_empty());
    net.g.peer_down(dead);
    assert!(!net.g.is_up(dead) && net.g.mesh(dead, TOPIC).count() == 0);
    assert!(!net.g.subscribers(TOPIC).contains(&dead));
    net.heartbeats(|_| false);
    for p in 0..1000 {
        assert!(
            !net.g.mesh(p, TOPIC).any(|q| q == dead),
            "{p} still meshes with the dead peer"
        );
    }
    let sizes = net.mesh_sizes();
    assert!(sizes.iter().all(|&s| (5..=12).contains(&s)));
    net.assert_symmetric();
    let from = net.log.len();
    for id in 0..3 {
        let st = net.publish(id as PeerIdx * 100 + 1, id, |_| false);
        let others = (0..1000).filter(|&p| p != dead && p != id as PeerIdx * 100 + 1);
        assert!(others.clone().all(|p| st.delivered[p as usize] == 1));
    }
    net.heartbeats(|_| false);
    assert!(
        net.log[from..].iter().all(|s| s.to != dead),
        "a send went to the crashed peer"
    );

    // Restart: empty state until it subscribes again, then it gets new messages.
    net.g.peer_up(dead);
    assert_eq!(net.g.mesh(dead, TOPIC).count(), 0);
    let Net { g, rng, now, .. } = &mut net;
    let sends = g.subscribe(*now, dead, TOPIC, &mut || rng.next());
    net.push(sends);
    net.drain(|_| false);
    net.heartbeats(|_| false);
    net.assert_symmetric();
    let st = net.publish(500, 3, |_| false);
    assert_eq!(st.delivered[dead as usize], 1);
}

#[test]
fn gossip_unsubscribe_and_fanout() {
    let mut net = Net::built(200, mesh_only(), 5, 3);
    let leaver: PeerIdx = 9;
    let sends = net.g.unsubscribe(leaver, TOPIC);
    assert!(sends.iter().all(|s| s.wire == Wire::Prune { topic: TOPIC }));
    net.push(sends);
    net.drain(|_| false);
    net.heartbeats(|_| false);
    net.assert_symmetric();
    assert!((0..200).all(|p| !net.g.mesh(p, TOPIC).any(|q| q == leaver)));
    // Not subscribed: publishes through a fanout set of D peers, and still everyone else gets it.
    let st = net.publish(leaver, 0, |_| false);
    assert_eq!(st.delivered[leaver as usize], 0);
    assert!((0..200).filter(|&p| p != leaver).all(|p| st.delivered[p as usize] == 1));
    let first_hop = net
        .log
        .iter()
        .filter(|s| s.from == leaver && s.wire.is_publish())
        .count();
    assert_eq!(first_hop, 6);
}

#[test]
fn gossip_memory_at_10k_peers() {
    let mut net = Net::built(10_000, GossipConfig::default(), 6, 3);
    for id in 0..20 {
        net.publish(id as PeerIdx * 37, id, |_| false);
    }
    net.heartbeats(|_| false);
    let bytes = net.g.memory_bytes();
    let sizes = net.mesh_sizes();
    eprintln!(
        "10,000 peers: memory_bytes {bytes} ({:.2} MB), mesh sizes {}..={}",
        bytes as f64 / 1e6,
        sizes.iter().min().unwrap(),
        sizes.iter().max().unwrap()
    );
    assert!(bytes < 50_000_000, "{bytes} bytes");
}
