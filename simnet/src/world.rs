//! The simulated world: peers running the real engine, the network, the gossip mesh and
//! the event loop. Scenarios drive it (see [`scale`](crate::scale)).
//!
//! Every message between peers is the engine's real output: sealed, signed bytes, handed
//! to the receivers' engines unchanged. Message bytes are shared between receivers (one
//! `Arc` per message). Engines share their signature and decryption results
//! ([`SharedChecks`]): each unique message is verified and opened once, and the work saved
//! is counted ([`World::crypto_work`]).

use crate::gossip::{Gossip, GossipConfig, Send as GossipSend, TopicIdx, Wire};
use crate::net::{Delivery, Net, NetConfig};
use crate::queue::Queue;
use crate::rng::Rng;
use ignite_core::code::{CompileRequest, CompiledCode};
use ignite_core::{Config, Engine, Event, Incoming, MessageHash, Output, Peer, SharedChecks, TenantId, TopicId};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What happens at a point of virtual time.
#[derive(Debug)]
pub enum Ev {
    /// A scenario event for peer `peer` (an invocation arrival, say), with a scenario tag.
    Scenario {
        /// The peer.
        peer: u32,
        /// The scenario's tag.
        tag: u64,
    },
    /// The engine of `peer` asked to be woken at this time.
    Timer {
        /// The peer.
        peer: u32,
    },
    /// Gossip heartbeat of `peer`.
    Heartbeat {
        /// The peer.
        peer: u32,
    },
    /// A gossip frame arrives.
    Gossip {
        /// Receiver.
        to: u32,
        /// The frame.
        send: GossipSend,
    },
    /// A point-to-point message arrives.
    Direct {
        /// Receiver.
        to: u32,
        /// Sender.
        from: u32,
        /// The bytes.
        bytes: Arc<[u8]>,
    },
    /// The host of `peer` finished compiling.
    CompileDone {
        /// The peer.
        peer: u32,
        /// The tenant.
        tenant: TenantId,
        /// The request answered.
        id: ignite_core::code::CompileId,
        /// The code.
        code: Box<CompiledCode>,
    },
}

/// What [`World::step`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// No event was waiting.
    Idle,
    /// An event of the world was handled.
    Handled,
    /// A scenario event is due: the scenario acts on it.
    Scenario {
        /// The peer.
        peer: u32,
        /// The scenario's tag.
        tag: u64,
    },
}

/// Counts the world keeps.
#[derive(Clone, Debug, Default)]
pub struct Traffic {
    /// Frames and point-to-point messages sent.
    pub messages: u64,
    /// Bytes sent (payload plus gossip control).
    pub bytes: u64,
    /// Engine messages published.
    pub published: u64,
    /// First deliveries of published messages, by hop count.
    pub hops: BTreeMap<u32, u64>,
    /// Messages lost or blocked by the network.
    pub dropped: u64,
    /// Deliveries also handed to an engine under another tenant's topic (a misrouting
    /// fault, see [`World::misroute`]).
    pub misrouted: u64,
    /// Misrouted deliveries an engine accepted (any is a cross-tenant effect).
    pub misrouted_accepted: u64,
    /// Messages and bytes sent, by kind (gossip RPC kind, or `direct`).
    pub by_kind: BTreeMap<&'static str, (u64, u64)>,
    /// Publish frames counted as sent but not queued: their receiver had the message
    /// already, so their arrival would change nothing (see [`World::skip_seen_within_us`]).
    pub frames_not_queued: u64,
}

/// A published message: its bytes, topic and the hop count per receiver so far.
struct Published {
    bytes: Arc<[u8]>,
    /// Hashed once for every engine that receives it.
    hash: MessageHash,
    topic: TopicIdx,
    at_us: u64,
}

/// How long published bytes are kept: past the gossip duplicate window (60 s) every copy
/// still in flight is a duplicate the mesh drops.
const KEEP_MESSAGES_US: u64 = 120_000_000;

/// A compile the scenario's host model answers.
pub type Compiler = Box<dyn FnMut(&CompileRequest) -> (CompiledCode, u64)>;

/// The world.
pub struct World {
    /// Virtual time, µs.
    pub now_us: u64,
    /// The engines, by peer.
    pub engines: Vec<Engine>,
    /// Whether each peer is up.
    pub up: Vec<bool>,
    /// The network.
    pub net: Net,
    /// The gossip mesh.
    pub gossip: Gossip,
    /// Pending events.
    pub queue: Queue<Ev>,
    /// Traffic counters.
    pub traffic: Traffic,
    /// Check results shared by every engine.
    pub shared: SharedChecks,
    /// Engine events not consumed by the world (installs, thresholds...), for the scenario.
    pub events: Vec<(u32, Event)>,
    /// Compile requests seen: (peer, request) summaries.
    pub compiles: Vec<(u32, ignite_core::CodeKey, ignite_core::ClassId, u32)>,
    /// The tenant of each entry of [`World::compiles`].
    pub compile_tenants: Vec<TenantId>,
    /// Share of gossip deliveries also handed to the receiver's engine under another topic
    /// it subscribes to (another tenant's): a misrouting fault. 0 by default.
    pub misroute: f64,
    /// Per peer, whether its host persists a snapshot after each of its publications
    /// (see [`World::snapshot`]).
    pub persist: Vec<bool>,
    /// A publish frame to a peer that already saw the message and is up, arriving less than
    /// this long after it is sent, is counted as sent (bytes, kind, and every draw of the
    /// network model, so results do not move) but not queued: the receiver would drop it as
    /// a duplicate. That holds as long as no peer restarts (with empty gossip state) within
    /// this long of crashing, which [`World::restart`] refuses. 0 (the default) queues
    /// every frame; a scenario sets it to its shortest down time, or `u64::MAX` without
    /// crashes.
    pub skip_seen_within_us: u64,
    /// Per peer, when it last went down.
    down_since: Vec<Option<u64>>,
    snapshots: Vec<Option<Arc<Vec<u8>>>>,
    entries_seen: Vec<u64>,
    configs: Vec<Config>,
    rng: Rng,
    topics: BTreeMap<TopicId, TopicIdx>,
    /// Published messages still kept, the first one with id `first_message`.
    messages: std::collections::VecDeque<Published>,
    first_message: u64,
    /// Earliest timer scheduled per peer (avoids flooding the queue with duplicates).
    timer_at: Vec<Option<u64>>,
    compiler: Compiler,
    heartbeat_us: u64,
    /// Per peer, the hop count of the messages it delivered recently (newest last).
    recent_hops: Vec<std::collections::VecDeque<(u64, u8)>>,
}

/// Recent deliveries remembered per peer for hop counting.
const RECENT_HOPS: usize = 256;

/// Milliseconds of virtual time for the engines.
pub fn ms(now_us: u64) -> ignite_core::Timestamp {
    ignite_core::Timestamp(START_MS + now_us / 1_000)
}

/// Virtual epoch of every simulation (engines see wall-clock-like milliseconds).
pub const START_MS: u64 = 1_700_000_000_000;

impl World {
    /// A world of `configs.len()` peers; engine `i` gets `configs[i]` with the shared
    /// check cache set. Tenants are joined by the scenario.
    pub fn new(
        seed: u64,
        configs: Vec<Config>,
        net: NetConfig,
        gossip: GossipConfig,
        compiler: Compiler,
    ) -> Result<World, ignite_core::EngineError> {
        // Results are reused while a message spreads (seconds): a few minutes of fleet traffic.
        let shared = SharedChecks::new((configs.len() * 512).max(8_192));
        let n = configs.len();
        let mut engines = Vec::with_capacity(n);
        let mut kept = Vec::with_capacity(n);
        for mut c in configs {
            c.shared = Some(shared.clone());
            engines.push(Engine::new(c.clone(), ignite_core::Incarnation(1))?);
            kept.push(c);
        }
        let heartbeat_us = gossip.heartbeat_interval_us;
        Ok(World {
            now_us: 0,
            engines,
            up: vec![true; n],
            net: Net::new(net, n as u32),
            gossip: Gossip::new(gossip, n as u32),
            queue: Queue::default(),
            traffic: Traffic::default(),
            shared,
            events: Vec::new(),
            compiles: Vec::new(),
            compile_tenants: Vec::new(),
            misroute: 0.0,
            persist: vec![false; n],
            skip_seen_within_us: 0,
            down_since: vec![None; n],
            snapshots: vec![None; n],
            entries_seen: vec![0; n],
            configs: kept,
            rng: Rng::new(seed).child(0x0077_6f72_6c64),
            topics: BTreeMap::new(),
            messages: std::collections::VecDeque::new(),
            first_message: 0,
            timer_at: vec![None; n],
            compiler,
            heartbeat_us,
            recent_hops: vec![std::collections::VecDeque::new(); n],
        })
    }

    /// Subscribes `peer`'s engine to `topic` in the mesh (after it joined the tenant).
    pub fn subscribe(&mut self, peer: u32, topic: &TopicId) {
        let next = self.topics.len() as TopicIdx;
        let idx = *self.topics.entry(topic.clone()).or_insert(next);
        let mut r = self.rng.child(u64::from(peer) << 8 | 1);
        let sends = self.gossip.subscribe(self.now_us, peer, idx, &mut || r.next_u64());
        self.send_frames(sends);
    }

    fn message(&self, id: u64) -> Option<&Published> {
        self.messages
            .get(usize::try_from(id.checked_sub(self.first_message)?).ok()?)
    }

    /// Gossip heartbeat interval, µs.
    pub fn heartbeat_us(&self) -> u64 {
        self.heartbeat_us
    }

    fn remember_hops(&mut self, peer: u32, id: u64, hops: u8) {
        let r = &mut self.recent_hops[peer as usize];
        if r.len() == RECENT_HOPS {
            r.pop_front();
        }
        r.push_back((id, hops));
    }

    fn hops_at(&self, peer: u32, id: u64) -> Option<u8> {
        self.recent_hops[peer as usize]
            .iter()
            .rev()
            .find(|(m, _)| *m == id)
            .map(|(_, h)| *h)
    }

    /// Starts heartbeats (staggered) and engine timers for every peer.
    pub fn start(&mut self) {
        for p in 0..self.engines.len() as u32 {
            let offset = self.rng.below(self.heartbeat_us.max(1));
            self.queue.push(self.now_us + offset, Ev::Heartbeat { peer: p });
            self.arm(p);
        }
    }

    /// Tells every engine which peers its mesh links it to (for anti-entropy partners).
    pub fn introduce_mesh_peers(&mut self) {
        let topics: Vec<(TopicId, TopicIdx)> = self.topics.iter().map(|(t, i)| (t.clone(), *i)).collect();
        for p in 0..self.engines.len() as u32 {
            for (topic, idx) in &topics {
                let mesh: Vec<u32> = self.gossip.mesh(p, *idx).collect();
                for q in mesh {
                    self.engines[p as usize].peer_joined(Peer(u64::from(q)), topic);
                }
            }
        }
    }

    fn arm(&mut self, peer: u32) {
        if let Some(t) = self.engines[peer as usize].poll_timeout() {
            let at = (t.0.saturating_sub(START_MS)) * 1_000;
            let at = at.max(self.now_us);
            if self.timer_at[peer as usize].is_none_or(|cur| at < cur) {
                self.timer_at[peer as usize] = Some(at);
                self.queue.push(at, Ev::Timer { peer });
            }
        }
    }

    fn send_frames(&mut self, sends: Vec<GossipSend>) {
        for s in sends {
            let payload = match &s.wire {
                Wire::Publish { id, .. } => self.message(*id).map_or(0, |m| m.bytes.len() as u64),
                _ => 0,
            };
            let bytes = payload + s.wire.control_bytes();
            self.traffic.messages += 1;
            self.traffic.bytes += bytes;
            let kind = match &s.wire {
                Wire::Publish { .. } => "publish",
                Wire::IHave { .. } => "ihave",
                Wire::IWant { .. } => "iwant",
                Wire::Graft { .. } => "graft",
                Wire::Prune { .. } => "prune",
            };
            let k = self.traffic.by_kind.entry(kind).or_insert((0, 0));
            k.0 += 1;
            k.1 += bytes;
            let to = s.to;
            let seen = match &s.wire {
                Wire::Publish { id, .. } => self.up[to as usize] && self.gossip.has_seen(to, *id),
                _ => false,
            };
            match self.net.delay_us(self.now_us, s.from, to, bytes, &mut self.rng) {
                Delivery::At(times) => {
                    for at in times {
                        if seen && at - self.now_us < self.skip_seen_within_us {
                            self.traffic.frames_not_queued += 1;
                            continue;
                        }
                        self.queue.push(at, Ev::Gossip { to, send: s.clone() });
                    }
                }
                Delivery::Lost | Delivery::Blocked => self.traffic.dropped += 1,
            }
        }
    }

    fn send_direct(&mut self, from: u32, to: u32, bytes: Arc<[u8]>) {
        self.traffic.messages += 1;
        self.traffic.bytes += bytes.len() as u64;
        let k = self.traffic.by_kind.entry("direct").or_insert((0, 0));
        k.0 += 1;
        k.1 += bytes.len() as u64;
        match self
            .net
            .delay_us(self.now_us, from, to, bytes.len() as u64, &mut self.rng)
        {
            Delivery::At(times) => {
                for at in times {
                    self.queue.push(
                        at,
                        Ev::Direct {
                            to,
                            from,
                            bytes: bytes.clone(),
                        },
                    );
                }
            }
            Delivery::Lost | Delivery::Blocked => self.traffic.dropped += 1,
        }
    }

    /// Moves `peer`'s engine outputs into the world: publications into the mesh,
    /// point-to-point sends into the network, compile requests to the host model, and other
    /// events to [`World::events`].
    pub fn drain(&mut self, peer: u32) {
        while let Some(out) = self.engines[peer as usize].poll_output() {
            match out {
                Output::Publish { topic, bytes } => {
                    let Some(&idx) = self.topics.get(&topic) else { continue };
                    let id = self.first_message + self.messages.len() as u64;
                    self.messages.push_back(Published {
                        hash: MessageHash::of(&bytes),
                        bytes: bytes.into(),
                        topic: idx,
                        at_us: self.now_us,
                    });
                    while self
                        .messages
                        .front()
                        .is_some_and(|m| m.at_us + KEEP_MESSAGES_US < self.now_us)
                    {
                        self.messages.pop_front();
                        self.first_message += 1;
                    }
                    self.traffic.published += 1;
                    self.remember_hops(peer, id, 0);
                    let mut r = self.rng.child(0x7075_6200_0000_0000 | id);
                    let sends = self.gossip.publish(self.now_us, peer, idx, id, &mut || r.next_u64());
                    self.send_frames(sends);
                }
                Output::Send { peer: to, bytes } => {
                    if let Ok(to) = u32::try_from(to.0) {
                        self.send_direct(peer, to, bytes.into());
                    }
                }
                Output::Event(Event::Compile(req)) => {
                    self.compiles.push((peer, req.key, req.class.id(), req.generation));
                    self.compile_tenants.push(req.tenant);
                    let (code, delay_us) = (self.compiler)(&req);
                    self.queue.push(
                        self.now_us + delay_us,
                        Ev::CompileDone {
                            peer,
                            tenant: req.tenant,
                            id: req.id,
                            code: Box::new(code),
                        },
                    );
                }
                Output::Event(e) => self.events.push((peer, e)),
                _ => {}
            }
        }
        if self.persist[peer as usize] {
            let entries = self.engines[peer as usize].stats().published_entries;
            if entries != self.entries_seen[peer as usize] {
                self.entries_seen[peer as usize] = entries;
                self.snapshot(peer);
            }
        }
        self.arm(peer);
    }

    /// Persists `peer`'s engine state now, as its host would (the restart point of
    /// [`World::restart`]). Done automatically after each publication of a peer whose
    /// [`World::persist`] flag is set: counts recorded since then are what a crash loses.
    pub fn snapshot(&mut self, peer: u32) {
        self.snapshots[peer as usize] = Some(Arc::new(self.engines[peer as usize].snapshot()));
    }

    /// `peer`'s last persisted snapshot.
    pub fn last_snapshot(&self, peer: u32) -> Option<Arc<Vec<u8>>> {
        self.snapshots[peer as usize].clone()
    }

    /// `peer` crashes: it stops at once (nothing flushed), drops out of the mesh, and
    /// messages in flight to it are lost. Its engine is kept, frozen, until
    /// [`World::restart`].
    pub fn crash(&mut self, peer: u32) {
        if self.up[peer as usize] {
            self.down_since[peer as usize] = Some(self.now_us);
        }
        self.up[peer as usize] = false;
        self.timer_at[peer as usize] = None;
        self.gossip.peer_down(peer);
        self.recent_hops[peer as usize].clear();
    }

    /// `peer` leaves gracefully: it publishes what it recorded, unsubscribes (PRUNE to its
    /// mesh) and stops.
    pub fn leave(&mut self, peer: u32) {
        let now = ms(self.now_us);
        self.engines[peer as usize].flush(now);
        self.drain(peer);
        let topics: Vec<TopicIdx> = self.topics.values().copied().collect();
        for t in topics {
            let sends = self.gossip.unsubscribe(peer, t);
            self.send_frames(sends);
        }
        self.crash(peer);
    }

    /// `peer` restarts: from `snapshot` in the same incarnation (its tenants joined again
    /// and subscribed), or, without one, as a fresh engine in `incarnation` with no tenant
    /// (the scenario joins them and calls [`World::subscribe`]). Its mesh links are
    /// introduced to the engines once it subscribes ([`World::introduce`]).
    pub fn restart(
        &mut self,
        peer: u32,
        snapshot: Option<&[u8]>,
        incarnation: ignite_core::Incarnation,
    ) -> Result<(), String> {
        if let Some(since) = self.down_since[peer as usize]
            && self.now_us - since < self.skip_seen_within_us
        {
            return Err(format!(
                "peer {peer} restarts {} µs after going down, within the {} µs in which frames to it were not queued",
                self.now_us - since,
                self.skip_seen_within_us
            ));
        }
        let config = self.configs[peer as usize].clone();
        let engine = match snapshot {
            Some(b) => Engine::restore(config, b).map_err(|e| e.to_string())?,
            None => Engine::new(config, incarnation).map_err(|e| e.to_string())?,
        };
        self.engines[peer as usize] = engine;
        self.entries_seen[peer as usize] = self.engines[peer as usize].stats().published_entries;
        self.up[peer as usize] = true;
        self.gossip.peer_up(peer);
        let topics: Vec<TopicId> = self.engines[peer as usize].tenants().map(|(_, t)| t.clone()).collect();
        for t in &topics {
            self.subscribe(peer, t);
        }
        self.introduce(peer);
        self.arm(peer);
        Ok(())
    }

    /// Tells `peer`'s engine about its current mesh peers, and them about it (anti-entropy
    /// partners), in every topic it subscribes to.
    pub fn introduce(&mut self, peer: u32) {
        let topics: Vec<(TopicId, TopicIdx)> = self.topics.iter().map(|(t, i)| (t.clone(), *i)).collect();
        for (topic, idx) in &topics {
            let mesh: Vec<u32> = self.gossip.mesh(peer, *idx).collect();
            for q in mesh {
                self.engines[peer as usize].peer_joined(Peer(u64::from(q)), topic);
                if self.up[q as usize] {
                    self.engines[q as usize].peer_joined(Peer(u64::from(peer)), topic);
                }
            }
        }
    }

    /// Pops and handles the next event.
    pub fn step(&mut self) -> Step {
        let Some((at, ev)) = self.queue.pop() else {
            return Step::Idle;
        };
        self.now_us = self.now_us.max(at);
        let now = ms(self.now_us);
        match ev {
            Ev::Scenario { peer, tag } => return Step::Scenario { peer, tag },
            Ev::Timer { peer } => {
                if self.timer_at[peer as usize] == Some(at) {
                    self.timer_at[peer as usize] = None;
                }
                if self.up[peer as usize] {
                    self.engines[peer as usize].handle_timeout(now);
                    self.drain(peer);
                }
            }
            Ev::Heartbeat { peer } => {
                if self.up[peer as usize] {
                    let mut r = self
                        .rng
                        .child(u64::from(peer) << 32 | (self.now_us / 1_000) & 0xffff_ffff);
                    let sends = self.gossip.heartbeat(self.now_us, peer, &mut || r.next_u64());
                    self.send_frames(sends);
                }
                self.queue.push(self.now_us + self.heartbeat_us, Ev::Heartbeat { peer });
            }
            Ev::Gossip { to, send } => {
                if !self.up[to as usize] {
                    return Step::Handled;
                }
                let mut r = self.rng.child(u64::from(to) << 40 | send.from as u64);
                let received = self.gossip.receive(self.now_us, to, &send, &mut || r.next_u64());
                if let Some(id) = received.deliver {
                    // Hops: one more than the sender's, when the sender's is still known.
                    if let Some(h) = self.hops_at(send.from, id) {
                        let h = h.saturating_add(1);
                        *self.traffic.hops.entry(u32::from(h)).or_insert(0) += 1;
                        self.remember_hops(to, id, h);
                    }
                    let Some(m) = self.message(id) else {
                        self.send_frames(received.sends);
                        return Step::Handled;
                    };
                    let topic = self.topics.iter().find(|(_, i)| **i == m.topic).map(|(t, _)| t.clone());
                    let (bytes, hash) = (m.bytes.clone(), m.hash);
                    // Misrouting fault: the same bytes also reach the engine under another
                    // topic it subscribes to; nothing may be accepted there.
                    let wrong = if self.misroute > 0.0 && self.rng.chance(self.misroute) {
                        let mine: Vec<TopicId> = self.engines[to as usize]
                            .tenants()
                            .map(|(_, t)| t.clone())
                            .filter(|t| Some(t) != topic.as_ref())
                            .collect();
                        (!mine.is_empty()).then(|| mine[self.rng.below(mine.len() as u64) as usize].clone())
                    } else {
                        None
                    };
                    let e = &mut self.engines[to as usize];
                    // The misrouted copy first: rejecting it must not keep the right one out.
                    if let Some(w) = wrong {
                        self.traffic.misrouted += 1;
                        let r = e.handle_messages(
                            now,
                            &[Incoming {
                                from: Peer(u64::from(send.from)),
                                topic: Some(&w),
                                bytes: &bytes,
                                hash: Some(hash),
                            }],
                        );
                        if r.iter().any(|r| r.as_ref().is_ok_and(|a| !a.duplicate_message)) {
                            self.traffic.misrouted_accepted += 1;
                        }
                    }
                    let _ = e.handle_messages(
                        now,
                        &[Incoming {
                            from: Peer(u64::from(send.from)),
                            topic: topic.as_ref(),
                            bytes: &bytes,
                            hash: Some(hash),
                        }],
                    );
                    self.drain(to);
                }
                self.send_frames(received.sends);
            }
            Ev::Direct { to, from, bytes } => {
                if self.up[to as usize] {
                    let _ = self.engines[to as usize].handle_message(now, Peer(u64::from(from)), None, &bytes);
                    self.drain(to);
                }
            }
            Ev::CompileDone { peer, tenant, id, code } => {
                if self.up[peer as usize] {
                    let _ = self.engines[peer as usize].compiled(now, &tenant, id, *code);
                    self.drain(peer);
                }
            }
        }
        Step::Handled
    }

    /// Crypto work actually done, and reused thanks to sharing: ((verified, opened),
    /// (verifications reused, decryptions reused)).
    pub fn crypto_work(&self) -> ((u64, u64), (u64, u64)) {
        let reused = self.engines.iter().fold((0, 0), |(v, o), e| {
            (v + e.stats().signatures_shared, o + e.stats().opens_shared)
        });
        (self.shared.work(), reused)
    }
}
