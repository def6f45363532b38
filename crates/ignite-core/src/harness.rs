//! A deterministic in-memory network for running several real engines in one process:
//! tests, examples and small experiments. Every message is the real sealed, signed bytes;
//! delivery delay, loss, duplication and partitions are drawn from one seeded generator.
//!
//! Topology: every engine that joined a tenant receives every message published on that
//! tenant's topic (a full mesh) after a random delay, unless lost or partitioned away.

use crate::code::{Assumption, CompileRequest, CompiledCode};
use crate::engine::{Engine, Event, Output};
use crate::ids::{Peer, Timestamp, TopicId};
use crate::profile::counter::Counter;
use crate::rng::SplitMix64;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Network behaviour of a [`Cluster`].
#[derive(Clone, Debug, PartialEq)]
pub struct NetConfig {
    /// Smallest delivery delay.
    pub delay_ms_min: u64,
    /// Largest delivery delay (delays are uniform in between, so messages reorder).
    pub delay_ms_max: u64,
    /// Probability that a delivery is lost.
    pub loss: f64,
    /// Probability that a delivery is duplicated.
    pub duplicate: f64,
}

impl Default for NetConfig {
    fn default() -> NetConfig {
        NetConfig {
            delay_ms_min: 1,
            delay_ms_max: 20,
            loss: 0.0,
            duplicate: 0.0,
        }
    }
}

#[derive(Debug)]
struct Delivery {
    to: usize,
    from: usize,
    topic: Option<TopicId>,
    bytes: Arc<[u8]>,
}

/// Several engines on a simulated network, driven in virtual time.
#[derive(Debug)]
pub struct Cluster {
    /// The engines; engine `i` is `Peer(i)` to the others.
    pub engines: Vec<Engine>,
    /// Network behaviour; may be changed between steps.
    pub net: NetConfig,
    /// Events emitted by engines, with the engine's index, in order.
    pub events: Vec<(usize, Event)>,
    /// Engines that are down: they neither send nor receive, nor see timers.
    pub down: BTreeSet<usize>,
    /// Ordered pairs (from, to) whose messages are dropped.
    pub blocked: BTreeSet<(usize, usize)>,
    /// Messages delivered so far (after loss).
    pub delivered: u64,
    /// Bytes delivered so far.
    pub delivered_bytes: u64,
    /// Messages the engines sent (published or point to point), before loss.
    pub sent: u64,
    /// When set, every compile request is answered by `compiler` after `compile_ms`
    /// (unless the engine is down by then: a node that dies mid-compile never answers).
    pub host: Option<SimHost>,
    /// Every compile request emitted, with the engine's index and the time.
    pub compiles: Vec<(usize, Timestamp, CompileRequest)>,
    /// Hash of every output of every engine, in order (see [`Cluster::trace_digest`]).
    trace: blake3::Hasher,
    now: Timestamp,
    queue: BTreeMap<(Timestamp, u64), Delivery>,
    next_id: u64,
    rng: SplitMix64,
    subs: BTreeMap<TopicId, BTreeSet<usize>>,
    answers: BTreeMap<(Timestamp, u64), (usize, CompileRequest)>,
}

/// A simulated host compiler for [`Cluster`].
#[derive(Clone, Copy, Debug)]
pub struct SimHost {
    /// Time a compile takes.
    pub compile_ms: u64,
    /// Produces the code for a request.
    pub compiler: fn(&CompileRequest) -> CompiledCode,
}

impl SimHost {
    /// A host that compiles in `compile_ms` with [`sim_compile`].
    pub fn new(compile_ms: u64) -> SimHost {
        SimHost {
            compile_ms,
            compiler: sim_compile,
        }
    }
}

/// A deterministic stand-in compiler: speculates a monomorphic call wherever the profile
/// shows a call site with one receiver (unless excluded; exactly the required assumptions
/// for attestation), and produces 100 KB of bytes derived from key, class and assumptions,
/// so that the same inputs give the same code on every node.
pub fn sim_compile(req: &CompileRequest) -> CompiledCode {
    let assumptions: Vec<Assumption> = match &req.required {
        Some(r) => r.clone(),
        None => {
            let mut out = Vec::new();
            for (k, v) in &req.profile {
                if let Counter::ReceiverTotal { site } = k.counter {
                    let types: Vec<(u32, u64)> = req
                        .profile
                        .iter()
                        .filter_map(|(k2, v2)| match k2.counter {
                            Counter::Receiver { site: s2, type_id } if s2 == site && k2.tier == k.tier => {
                                Some((type_id, *v2))
                            }
                            _ => None,
                        })
                        .collect();
                    if let [(target, n)] = types[..]
                        && n == *v
                    {
                        let a = Assumption::MonomorphicCall { site, target };
                        if !req.excluded.contains(&a) && !out.contains(&a) {
                            out.push(a);
                        }
                    }
                }
            }
            out
        }
    };
    let mut h = blake3::Hasher::new_derive_key("ignite sim compiler");
    h.update(&postcard::to_allocvec(&(req.key, req.class.id(), &assumptions)).expect("encodes"));
    let mut bytes = vec![0u8; 100_000];
    h.finalize_xof().fill(&mut bytes);
    CompiledCode { bytes, assumptions }
}

impl Cluster {
    /// A cluster of `engines` starting at `now`.
    pub fn new(seed: u64, now: Timestamp, engines: Vec<Engine>) -> Cluster {
        let mut c = Cluster {
            engines,
            net: NetConfig::default(),
            events: Vec::new(),
            down: BTreeSet::new(),
            blocked: BTreeSet::new(),
            delivered: 0,
            delivered_bytes: 0,
            sent: 0,
            trace: blake3::Hasher::new_derive_key("ignite v1 cluster trace"),
            now,
            queue: BTreeMap::new(),
            next_id: 0,
            rng: SplitMix64::new(seed),
            subs: BTreeMap::new(),
            host: None,
            compiles: Vec::new(),
            answers: BTreeMap::new(),
        };
        c.resubscribe();
        c
    }

    /// Current virtual time.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// A hash of every output (published and sent bytes, events) of every engine so far, in
    /// order: two runs with the same seeds and inputs give the same digest.
    pub fn trace_digest(&self) -> [u8; 32] {
        *self.trace.finalize().as_bytes()
    }

    /// Recomputes topic subscriptions from the engines' tenants and tells every engine about
    /// every other subscriber (call after an engine joins a tenant or is replaced).
    pub fn resubscribe(&mut self) {
        self.subs.clear();
        for (i, e) in self.engines.iter().enumerate() {
            for (_, topic) in e.tenants() {
                self.subs.entry(topic.clone()).or_default().insert(i);
            }
        }
        for (topic, members) in &self.subs {
            for &i in members {
                for &j in members {
                    if i != j {
                        self.engines[i].peer_joined(Peer(j as u64), topic);
                    }
                }
            }
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.rng.next_u64() as f64 / u64::MAX as f64) < p
    }

    fn enqueue(&mut self, from: usize, to: usize, topic: Option<TopicId>, bytes: Arc<[u8]>) {
        if self.blocked.contains(&(from, to)) || self.down.contains(&to) || self.chance(self.net.loss) {
            return;
        }
        let copies = if self.chance(self.net.duplicate) { 2 } else { 1 };
        for _ in 0..copies {
            let span = self.net.delay_ms_max.saturating_sub(self.net.delay_ms_min) + 1;
            let at = self.now.plus_ms(self.net.delay_ms_min + self.rng.below(span));
            self.next_id += 1;
            self.queue.insert(
                (at, self.next_id),
                Delivery {
                    to,
                    from,
                    topic: topic.clone(),
                    bytes: bytes.clone(),
                },
            );
        }
    }

    fn drain(&mut self, i: usize) {
        while let Some(out) = self.engines[i].poll_output() {
            self.trace.update(&(i as u64).to_le_bytes());
            match &out {
                Output::Publish { bytes, .. } => {
                    self.trace.update(b"P");
                    self.trace.update(&(bytes.len() as u64).to_le_bytes());
                    self.trace.update(bytes);
                }
                Output::Send { peer, bytes } => {
                    self.trace.update(b"S");
                    self.trace.update(&peer.0.to_le_bytes());
                    self.trace.update(&(bytes.len() as u64).to_le_bytes());
                    self.trace.update(bytes);
                }
                Output::Event(e) => {
                    self.trace.update(format!("E{e:?}").as_bytes());
                }
            }
            if !matches!(out, Output::Event(_)) {
                self.sent += 1;
            }
            match out {
                Output::Publish { topic, bytes } => {
                    let bytes: Arc<[u8]> = bytes.into();
                    let members: Vec<usize> = self
                        .subs
                        .get(&topic)
                        .map(|s| s.iter().copied().collect())
                        .unwrap_or_default();
                    for j in members {
                        if j != i {
                            self.enqueue(i, j, Some(topic.clone()), bytes.clone());
                        }
                    }
                }
                Output::Send { peer, bytes } => {
                    let to = peer.0 as usize;
                    if to < self.engines.len() {
                        self.enqueue(i, to, None, bytes.into());
                    }
                }
                Output::Event(e) => {
                    if let Event::Compile(req) = &e {
                        self.compiles.push((i, self.now, (**req).clone()));
                        if let Some(host) = self.host {
                            self.next_id += 1;
                            self.answers
                                .insert((self.now.plus_ms(host.compile_ms), self.next_id), (i, (**req).clone()));
                        }
                    }
                    self.events.push((i, e))
                }
            }
        }
    }

    /// Runs until virtual time `until`: delivers messages and fires timers in time order.
    pub fn run_until(&mut self, until: Timestamp) {
        loop {
            for i in 0..self.engines.len() {
                if !self.down.contains(&i) {
                    self.drain(i);
                }
            }
            let next_msg = self.queue.keys().next().map(|(t, _)| *t);
            let next_answer = self.answers.keys().next().map(|(t, _)| *t);
            if let Some(at) = next_answer
                && at <= until
                && next_msg.is_none_or(|m| at <= m)
                && (0..self.engines.len())
                    .filter(|i| !self.down.contains(i))
                    .filter_map(|i| self.engines[i].poll_timeout())
                    .all(|t| at <= t.max(self.now))
            {
                let (_, (i, req)) = self.answers.pop_first().expect("answer queued");
                self.now = self.now.max(at);
                if !self.down.contains(&i) {
                    let host = self.host.expect("answers need a host");
                    let code = (host.compiler)(&req);
                    let _ = self.engines[i].compiled(self.now, &req.tenant, req.id, code);
                }
                continue;
            }
            let next_timer = (0..self.engines.len())
                .filter(|i| !self.down.contains(i))
                .filter_map(|i| self.engines[i].poll_timeout().map(|t| (t.max(self.now), i)))
                .min();
            let next = match (next_msg, next_timer) {
                (Some(m), Some((t, _))) => m.min(t),
                (Some(m), None) => m,
                (None, Some((t, _))) => t,
                (None, None) => break,
            };
            if next > until {
                break;
            }
            self.now = next;
            if next_msg == Some(next) {
                let (_, d) = self.queue.pop_first().expect("queue not empty");
                if !self.down.contains(&d.to) {
                    self.delivered += 1;
                    self.delivered_bytes += d.bytes.len() as u64;
                    let _ =
                        self.engines[d.to].handle_message(self.now, Peer(d.from as u64), d.topic.as_ref(), &d.bytes);
                }
            } else if let Some((_, i)) = next_timer {
                self.engines[i].handle_timeout(self.now);
            }
        }
        self.now = self.now.max(until);
    }
}
