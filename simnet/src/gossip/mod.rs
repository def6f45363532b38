//! A gossipsub-like mesh model (libp2p gossipsub v1.1 message dissemination), sans-IO and
//! deterministic.
//!
//! The simulator owns time, the network and the message bytes; [`Gossip`] only decides who sends
//! which [`Wire`] RPC to whom. Every call takes the virtual time and returns the [`Send`]s to
//! deliver (after whatever latency the simulator models) through [`Gossip::receive`]. Randomness
//! comes only from the `rng` closure the caller passes, collections are iterated in a fixed order
//! and there is no clock: the same calls with the same rng outputs give the same sends.
//!
//! What is modelled, following rust-libp2p's gossipsub (defaults in [`GossipConfig`]):
//! - per-topic meshes: a subscriber grafts up to D known subscribers; each heartbeat drops mesh
//!   peers that crashed or unsubscribed, grafts up to D when below D_low and prunes random peers
//!   down to D when above D_high; a GRAFT is refused with PRUNE when the mesh is full or a backoff
//!   runs; PRUNE removes both ends and starts a backoff, so meshes stay symmetric once the RPCs in
//!   flight are delivered;
//! - eager push: a new message goes to every mesh peer but the one it came from and its origin;
//!   own messages are flood-published (or go to the mesh topped up to D, or to a fanout set when
//!   not subscribed);
//! - lazy push: each heartbeat sends IHAVE with the ids of the last `history_gossip` windows to
//!   `max(D_lazy, gossip_factor * non-mesh peers)` random non-mesh subscribers; IHAVE is answered
//!   with IWANT for unseen ids not already asked for (gossip promise, `iwant_followup_time`);
//!   IWANT is answered from the message cache (`history_length` windows);
//! - duplicate suppression with a duplicate cache.
//!
//! Model simplifications, for memory at 10,000 peers:
//! - **Full membership view**: every peer knows every subscriber of a topic (as after peer
//!   exchange); one shared sorted subscriber list per topic, not one per peer. Subscriptions are
//!   not sent as RPCs. "Connected peers", over which rust-libp2p computes flood publishing and
//!   gossip fan-out, are [`GossipConfig::connected_peers`] random subscribers.
//! - **Duplicate cache as a sliding window**: ids are dense and increase in publish order, so a
//!   peer's duplicate cache is a bitmap over the ids from a base id. An id published more than
//!   `duplicate_cache_time` ago leaves every window and from then on counts as already seen by
//!   everybody (libp2p measures the time from each peer's first sight instead; the difference
//!   only matters for messages still travelling a minute after publication).
//! - **Crashes** ([`Gossip::peer_down`]) clear the peer's state and remove it from the
//!   subscriber lists at once; the other peers drop it from their meshes and fanout sets at their
//!   next heartbeat (the closed connection), and ignore a GRAFT it sent before crashing.

mod config;
mod peer;
#[cfg(test)]
mod tests;
mod wire;

use std::collections::{BTreeMap, VecDeque};
use std::mem::size_of;

pub use config::GossipConfig;
pub use wire::{MSG_ID_BYTES, PEER_ID_BYTES, SIGNATURE_BYTES, TOPIC_BYTES, Wire};

use peer::{Fanout, Mesh, Peer, sample, shuffle};

/// A message, identified by a dense id the simulator assigns in publish order.
pub type MsgId = u64;
/// A peer, `0..peers`.
pub type PeerIdx = u32;
/// A topic.
pub type TopicIdx = u32;

/// One RPC to deliver: `from` sends `wire` to `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Send {
    /// Sender.
    pub from: PeerIdx,
    /// Receiver.
    pub to: PeerIdx,
    /// The RPC.
    pub wire: Wire,
}

/// What receiving one [`Send`] produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Received {
    /// A message the receiver had not seen, on a topic it is subscribed to: hand it to the
    /// engine.
    pub deliver: Option<MsgId>,
    /// RPCs the receiver sends in reaction (forwards, IWANT, answers to IWANT, PRUNE).
    pub sends: Vec<Send>,
}

/// A published message still inside the duplicate window.
#[derive(Clone, Copy, Debug)]
struct MsgRec {
    id: MsgId,
    published_us: u64,
    topic: TopicIdx,
    origin: PeerIdx,
}

/// The gossip state of every peer of the simulation. See the [module](self) documentation.
#[derive(Debug)]
pub struct Gossip {
    config: GossipConfig,
    peers: Vec<Peer>,
    /// Sorted subscribers (up peers only) per topic.
    topics: BTreeMap<TopicIdx, Vec<PeerIdx>>,
    /// Published messages younger than `duplicate_cache_time`, by increasing id.
    recent: VecDeque<MsgRec>,
    /// Every id below this expired (counts as seen).
    expired_below: MsgId,
    /// Ids of new publications must be at least this.
    next_id: MsgId,
    /// Latest time seen in a call.
    now_us: u64,
}

impl Gossip {
    /// A model of `peers` peers, all up and subscribed to nothing.
    ///
    /// # Panics
    /// If `config` fails [`GossipConfig::validate`].
    pub fn new(config: GossipConfig, peers: u32) -> Gossip {
        if let Err(e) = config.validate() {
            panic!("invalid GossipConfig: {e}");
        }
        Gossip {
            config,
            peers: (0..peers).map(|_| Peer::up()).collect(),
            topics: BTreeMap::new(),
            recent: VecDeque::new(),
            expired_below: 0,
            next_id: 0,
            now_us: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &GossipConfig {
        &self.config
    }

    /// Whether `peer` is up (not crashed).
    pub fn is_up(&self, peer: PeerIdx) -> bool {
        self.peers[peer as usize].up
    }

    /// The subscribers of `topic`, sorted.
    pub fn subscribers(&self, topic: TopicIdx) -> &[PeerIdx] {
        self.topics.get(&topic).map_or(&[], Vec::as_slice)
    }

    /// `peer` subscribes to `topic` (nothing if it is down or already subscribed) and grafts up
    /// to D peers: its fanout peers of the topic first, then random subscribers not in backoff.
    /// Returns the GRAFTs.
    pub fn subscribe(
        &mut self,
        now_us: u64,
        peer: PeerIdx,
        topic: TopicIdx,
        rng: &mut impl FnMut() -> u64,
    ) -> Vec<Send> {
        self.advance(now_us);
        let p = peer as usize;
        if !self.peers[p].up || self.peers[p].mesh(topic).is_some() {
            return Vec::new();
        }
        let subs = self.topics.entry(topic).or_default();
        if let Err(at) = subs.binary_search(&peer) {
            subs.insert(at, peer);
        }
        let (d, now, slack) = (self.config.mesh_n, self.now_us, self.slack_us());
        let subs = self.subscribers(topic);
        let me = &self.peers[p];
        let mut chosen: Vec<PeerIdx> = Vec::new();
        if let Ok(i) = me.fanout.binary_search_by_key(&topic, |f| f.topic) {
            chosen.extend(
                me.fanout[i]
                    .peers
                    .iter()
                    .copied()
                    .filter(|&q| subs.binary_search(&q).is_ok() && !me.in_backoff(topic, q, now, slack))
                    .take(d),
            );
        }
        let more = sample(
            subs,
            d - chosen.len(),
            |q| q != peer && !chosen.contains(&q) && !me.in_backoff(topic, q, now, slack),
            rng,
        );
        chosen.extend(more);
        chosen.sort_unstable();
        let me = &mut self.peers[p];
        if let Ok(i) = me.fanout.binary_search_by_key(&topic, |f| f.topic) {
            me.fanout.remove(i);
        }
        let sends = chosen.iter().map(|&q| send(peer, q, Wire::Graft { topic })).collect();
        let at = me.meshes.partition_point(|m| m.topic < topic);
        me.meshes.insert(at, Mesh { topic, peers: chosen });
        sends
    }

    /// `peer` unsubscribes from `topic`: PRUNE to its mesh peers, which it then keeps in backoff
    /// for `unsubscribe_backoff` (from the latest time seen). Nothing if it was not subscribed.
    pub fn unsubscribe(&mut self, peer: PeerIdx, topic: TopicIdx) -> Vec<Send> {
        let p = peer as usize;
        let Ok(i) = self.peers[p].meshes.binary_search_by_key(&topic, |m| m.topic) else {
            return Vec::new();
        };
        self.remove_subscriber(topic, peer);
        let until = self.now_us + self.config.unsubscribe_backoff_us;
        let me = &mut self.peers[p];
        let mesh = me.meshes.remove(i);
        for &q in &mesh.peers {
            me.add_backoff(topic, q, until);
        }
        mesh.peers
            .iter()
            .map(|&q| send(peer, q, Wire::Prune { topic }))
            .collect()
    }

    /// Whether `peer` is up and has seen message `id` (it would drop it as a duplicate).
    pub fn has_seen(&self, peer: PeerIdx, id: MsgId) -> bool {
        let p = &self.peers[peer as usize];
        p.up && p.seen.contains(id, self.low())
    }

    /// `peer` crashes: all its state is cleared and it leaves every subscriber list; its mesh
    /// peers drop it at their next heartbeat. Sends to it should be dropped by the simulator
    /// ([`Gossip::receive`] ignores them).
    pub fn peer_down(&mut self, peer: PeerIdx) {
        let p = peer as usize;
        if !self.peers[p].up {
            return;
        }
        let old = std::mem::take(&mut self.peers[p]);
        for mesh in &old.meshes {
            self.remove_subscriber(mesh.topic, peer);
            for &q in &mesh.peers {
                let lost = &mut self.peers[q as usize].lost;
                if !lost.contains(&peer) {
                    lost.push(peer);
                }
            }
        }
    }

    /// `peer` restarts with empty state (no subscriptions: call [`Gossip::subscribe`] again).
    pub fn peer_up(&mut self, peer: PeerIdx) {
        let p = peer as usize;
        if !self.peers[p].up {
            self.peers[p] = Peer::up();
        }
    }

    /// `peer` publishes message `id` on `topic`. With `flood_publish` it goes to the mesh plus
    /// random subscribers up to `connected_peers`; otherwise to the mesh topped up to D with
    /// random subscribers, or, when not subscribed, to the topic's fanout set (D random
    /// subscribers, kept for `fanout_ttl`). Nothing if `peer` is down.
    ///
    /// # Panics
    /// If `id` is not larger than every id published before (ids are dense, in publish order).
    pub fn publish(
        &mut self,
        now_us: u64,
        peer: PeerIdx,
        topic: TopicIdx,
        id: MsgId,
        rng: &mut impl FnMut() -> u64,
    ) -> Vec<Send> {
        self.advance(now_us);
        assert!(
            id >= self.next_id,
            "message ids must increase in publish order ({id} < {})",
            self.next_id
        );
        self.next_id = id + 1;
        let p = peer as usize;
        if !self.peers[p].up {
            return Vec::new();
        }
        self.recent.push_back(MsgRec {
            id,
            published_us: self.now_us,
            topic,
            origin: peer,
        });
        let (low, hl, now) = (self.low(), self.config.history_length, self.now_us);
        self.peers[p].seen.insert(id, low);
        self.peers[p].cache(id, hl);

        let subs = self.subscribers(topic);
        let me = &self.peers[p];
        let others = subs.len() - usize::from(subs.binary_search(&peer).is_ok());
        let flood_target = self.config.connected_peers.min(others);
        let mut to: Vec<PeerIdx>;
        let mut new_fanout = None;
        if let Some(mesh) = me.mesh(topic) {
            to = mesh.peers.clone();
            let target = if self.config.flood_publish {
                flood_target
            } else {
                self.config.mesh_n
            };
            let extra = sample(
                subs,
                target.saturating_sub(to.len()),
                |q| q != peer && !to.contains(&q),
                rng,
            );
            to.extend(extra);
        } else if self.config.flood_publish {
            to = sample(subs, flood_target, |q| q != peer, rng);
        } else {
            to = match me.fanout.binary_search_by_key(&topic, |f| f.topic) {
                Ok(i) => me.fanout[i].peers.clone(),
                Err(_) => {
                    let mut fresh = sample(subs, self.config.mesh_n, |q| q != peer, rng);
                    fresh.sort_unstable();
                    fresh
                }
            };
            new_fanout = Some(to.clone());
        }
        if let Some(peers) = new_fanout {
            let me = &mut self.peers[p];
            match me.fanout.binary_search_by_key(&topic, |f| f.topic) {
                Ok(i) => me.fanout[i].last_pub_us = now,
                Err(i) => me.fanout.insert(
                    i,
                    Fanout {
                        topic,
                        peers,
                        last_pub_us: now,
                    },
                ),
            }
        }
        to.sort_unstable();
        to.into_iter()
            .map(|q| send(peer, q, Wire::Publish { topic, id }))
            .collect()
    }

    /// Peer `to` receives `s` (sent by `s.from`). Nothing happens if `to` is down.
    pub fn receive(&mut self, now_us: u64, to: PeerIdx, s: &Send, rng: &mut impl FnMut() -> u64) -> Received {
        self.advance(now_us);
        let _ = rng; // Receiving draws nothing today; the parameter keeps the API stable.
        let p = to as usize;
        if !self.peers[p].up {
            return Received::default();
        }
        match &s.wire {
            Wire::Publish { topic, id } => self.on_message(to, s.from, *topic, *id),
            Wire::IHave { topic, ids } => Received {
                deliver: None,
                sends: self.on_ihave(to, s.from, *topic, ids),
            },
            Wire::IWant { ids } => {
                let me = &self.peers[p];
                let sends = ids
                    .iter()
                    .filter(|&&id| me.cached(id))
                    .filter_map(|&id| self.record(id))
                    .map(|r| {
                        send(
                            to,
                            s.from,
                            Wire::Publish {
                                topic: r.topic,
                                id: r.id,
                            },
                        )
                    })
                    .collect();
                Received { deliver: None, sends }
            }
            Wire::Graft { topic } => Received {
                deliver: None,
                sends: self.on_graft(to, s.from, *topic),
            },
            Wire::Prune { topic } => {
                let until = self.now_us + self.config.prune_backoff_us;
                let me = &mut self.peers[p];
                if let Some(mesh) = me.mesh_mut(*topic) {
                    if let Ok(i) = mesh.peers.binary_search(&s.from) {
                        mesh.peers.remove(i);
                    }
                    me.add_backoff(*topic, s.from, until);
                }
                Received::default()
            }
        }
    }

    /// `peer`'s heartbeat (the simulator calls it every `heartbeat_interval` per peer): mesh
    /// maintenance toward D within [D_low, D_high], fanout upkeep, IHAVE gossip, expiry of
    /// backoffs and gossip promises, and a new message-cache window.
    pub fn heartbeat(&mut self, now_us: u64, peer: PeerIdx, rng: &mut impl FnMut() -> u64) -> Vec<Send> {
        self.advance(now_us);
        let p = peer as usize;
        if !self.peers[p].up {
            return Vec::new();
        }
        let (now, low, slack) = (self.now_us, self.low(), self.slack_us());
        let cfg = self.config.clone();
        let mut sends = Vec::new();
        let me = &mut self.peers[p];
        let lost = std::mem::take(&mut me.lost);
        me.backoff.retain(|b| now < b.until_us.saturating_add(slack));
        me.promised.retain(|&(id, until)| until > now && id >= low);

        let topics: Vec<TopicIdx> = me.meshes.iter().map(|m| m.topic).collect();
        for topic in topics {
            let mut mp = self.peers[p]
                .mesh_mut(topic)
                .map(|m| std::mem::take(&mut m.peers))
                .unwrap_or_default();
            let subs = self.subscribers(topic);
            mp.retain(|q| !lost.contains(q) && self.peers[*q as usize].up && subs.binary_search(q).is_ok());
            let me = &self.peers[p];
            let mut pruned = Vec::new();
            if mp.len() < cfg.mesh_n_low {
                let add = sample(
                    subs,
                    cfg.mesh_n - mp.len(),
                    |q| q != peer && !mp.contains(&q) && !me.in_backoff(topic, q, now, slack),
                    rng,
                );
                sends.extend(add.iter().map(|&q| send(peer, q, Wire::Graft { topic })));
                mp.extend(add);
                mp.sort_unstable();
            } else if mp.len() > cfg.mesh_n_high {
                shuffle(&mut mp, rng);
                pruned = mp.split_off(cfg.mesh_n);
                pruned.sort_unstable();
                mp.sort_unstable();
                sends.extend(pruned.iter().map(|&q| send(peer, q, Wire::Prune { topic })));
            }
            self.emit_gossip(peer, topic, &mp, &mut sends, rng);
            let me = &mut self.peers[p];
            for &q in &pruned {
                me.add_backoff(topic, q, now + cfg.prune_backoff_us);
            }
            if let Some(m) = me.mesh_mut(topic) {
                m.peers = mp;
            }
        }

        let mut fanout = std::mem::take(&mut self.peers[p].fanout);
        fanout.retain(|f| f.last_pub_us.saturating_add(cfg.fanout_ttl_us) > now);
        for f in &mut fanout {
            let subs = self.subscribers(f.topic);
            f.peers
                .retain(|q| !lost.contains(q) && self.peers[*q as usize].up && subs.binary_search(q).is_ok());
            if f.peers.len() < cfg.mesh_n {
                let add = sample(
                    subs,
                    cfg.mesh_n - f.peers.len(),
                    |q| q != peer && !f.peers.contains(&q),
                    rng,
                );
                f.peers.extend(add);
                f.peers.sort_unstable();
            }
            self.emit_gossip(peer, f.topic, &f.peers, &mut sends, rng);
        }
        let me = &mut self.peers[p];
        me.fanout = fanout;
        me.shift_cache(cfg.history_length);
        sends
    }

    /// The mesh of `peer` for `topic`, sorted (empty when not subscribed).
    pub fn mesh(&self, peer: PeerIdx, topic: TopicIdx) -> impl Iterator<Item = PeerIdx> + '_ {
        self.peers[peer as usize]
            .mesh(topic)
            .into_iter()
            .flat_map(|m| m.peers.iter().copied())
    }

    /// Approximate heap (and inline) bytes of the whole model.
    pub fn memory_bytes(&self) -> usize {
        let peers: usize = self.peers.iter().map(Peer::heap_bytes).sum();
        let topics: usize = self
            .topics
            .values()
            .map(|v| v.capacity() * size_of::<PeerIdx>() + size_of::<(TopicIdx, Vec<PeerIdx>)>() + 16)
            .sum();
        size_of::<Gossip>()
            + self.peers.capacity() * size_of::<Peer>()
            + peers
            + topics
            + self.recent.capacity() * size_of::<MsgRec>()
    }

    /// A new message: dedupe, deliver and forward to the mesh.
    fn on_message(&mut self, to: PeerIdx, from: PeerIdx, topic: TopicIdx, id: MsgId) -> Received {
        let (low, hl) = (self.low(), self.config.history_length);
        let origin = self.record(id).map(|r| r.origin);
        let me = &mut self.peers[to as usize];
        if !me.seen.insert(id, low) {
            return Received::default();
        }
        if let Ok(i) = me.promised.binary_search_by_key(&id, |x| x.0) {
            me.promised.remove(i);
        }
        let Some(mesh) = me.mesh(topic) else {
            // Not subscribed: libp2p drops it (after the duplicate-cache insertion).
            return Received::default();
        };
        let sends = mesh
            .peers
            .iter()
            .filter(|&&q| q != from && Some(q) != origin)
            .map(|&q| send(to, q, Wire::Publish { topic, id }))
            .collect();
        me.cache(id, hl);
        Received {
            deliver: Some(id),
            sends,
        }
    }

    /// IHAVE: IWANT the unseen ids not already promised, starting their promises.
    fn on_ihave(&mut self, to: PeerIdx, from: PeerIdx, topic: TopicIdx, ids: &[MsgId]) -> Vec<Send> {
        let (low, now) = (self.low(), self.now_us);
        let until = now + self.config.iwant_followup_time_us;
        let max = self.config.max_ihave_length;
        let me = &mut self.peers[to as usize];
        if me.mesh(topic).is_none() {
            return Vec::new();
        }
        let mut want = Vec::new();
        for &id in ids {
            if want.len() == max {
                break;
            }
            if me.seen.contains(id, low) {
                continue;
            }
            match me.promised.binary_search_by_key(&id, |x| x.0) {
                Ok(i) if me.promised[i].1 > now => continue,
                Ok(i) => me.promised[i].1 = until,
                Err(i) => me.promised.insert(i, (id, until)),
            }
            want.push(id);
        }
        if want.is_empty() {
            Vec::new()
        } else {
            vec![send(to, from, Wire::IWant { ids: want })]
        }
    }

    /// GRAFT: join the mesh, or PRUNE back when the mesh is full or a backoff runs.
    fn on_graft(&mut self, to: PeerIdx, from: PeerIdx, topic: TopicIdx) -> Vec<Send> {
        if !self.peers[from as usize].up {
            return Vec::new();
        }
        let (now, high) = (self.now_us, self.config.mesh_n_high);
        let until = now + self.config.prune_backoff_us;
        let me = &mut self.peers[to as usize];
        let backoff = me.in_backoff(topic, from, now, 0);
        // A GRAFT for a topic we are not subscribed to is ignored, as in libp2p.
        let Some(mesh) = me.mesh_mut(topic) else {
            return Vec::new();
        };
        let Err(at) = mesh.peers.binary_search(&from) else {
            return Vec::new();
        };
        if backoff || mesh.peers.len() >= high {
            me.add_backoff(topic, from, until);
            return vec![send(to, from, Wire::Prune { topic })];
        }
        mesh.peers.insert(at, from);
        Vec::new()
    }

    /// IHAVE of the recent windows' ids of `topic` to random subscribers outside `exclude`.
    fn emit_gossip(
        &self,
        peer: PeerIdx,
        topic: TopicIdx,
        exclude: &[PeerIdx],
        sends: &mut Vec<Send>,
        rng: &mut impl FnMut() -> u64,
    ) {
        let cfg = &self.config;
        let me = &self.peers[peer as usize];
        let mut ids: Vec<MsgId> = me
            .mcache
            .iter()
            .take(cfg.history_gossip)
            .flatten()
            .copied()
            .filter(|&id| self.record(id).is_some_and(|r| r.topic == topic))
            .collect();
        if ids.is_empty() {
            return;
        }
        ids.sort_unstable();
        if ids.len() > cfg.max_ihave_length {
            shuffle(&mut ids, rng);
            ids.truncate(cfg.max_ihave_length);
            ids.sort_unstable();
        }
        let subs = self.subscribers(topic);
        let others = subs.len() - usize::from(subs.binary_search(&peer).is_ok());
        let non_mesh = cfg.connected_peers.min(others).saturating_sub(exclude.len());
        let n = cfg.gossip_lazy.max((cfg.gossip_factor * non_mesh as f64) as usize);
        let mut targets = sample(subs, n, |q| q != peer && !exclude.contains(&q), rng);
        targets.sort_unstable();
        sends.extend(targets.into_iter().map(|q| {
            send(
                peer,
                q,
                Wire::IHave {
                    topic,
                    ids: ids.clone(),
                },
            )
        }));
    }

    /// Moves the clock to `now_us` (never back) and expires old duplicate-window entries.
    fn advance(&mut self, now_us: u64) {
        self.now_us = self.now_us.max(now_us);
        while let Some(r) = self.recent.front() {
            if r.published_us.saturating_add(self.config.duplicate_cache_time_us) > self.now_us {
                break;
            }
            self.expired_below = r.id + 1;
            self.recent.pop_front();
        }
    }

    fn remove_subscriber(&mut self, topic: TopicIdx, peer: PeerIdx) {
        if let Some(subs) = self.topics.get_mut(&topic)
            && let Ok(at) = subs.binary_search(&peer)
        {
            subs.remove(at);
        }
    }

    /// Ids below this count as seen by everybody.
    fn low(&self) -> MsgId {
        self.recent.front().map_or(self.expired_below, |r| r.id)
    }

    fn record(&self, id: MsgId) -> Option<&MsgRec> {
        self.recent
            .binary_search_by_key(&id, |r| r.id)
            .ok()
            .map(|i| &self.recent[i])
    }

    fn slack_us(&self) -> u64 {
        u64::from(self.config.backoff_slack) * self.config.heartbeat_interval_us
    }
}

fn send(from: PeerIdx, to: PeerIdx, wire: Wire) -> Send {
    Send { from, to, wire }
}
