//! Per-peer state of the model and the random-choice helpers.

use std::collections::VecDeque;
use std::mem::size_of;

use super::{MsgId, PeerIdx, TopicIdx};

/// The duplicate cache of one peer: a bitmap over the dense id space, starting at `base` (a
/// multiple of 64). Ids below the model's global expiry bound count as seen; the words below it
/// are dropped as the bound advances.
#[derive(Debug, Default)]
pub(super) struct Seen {
    base: MsgId,
    words: VecDeque<u64>,
}

impl Seen {
    /// Whether `id` was seen, ids below `low` (expired) counting as seen.
    pub(super) fn contains(&self, id: MsgId, low: MsgId) -> bool {
        if id < low || id < self.base {
            return true;
        }
        let idx = id - self.base;
        self.words
            .get((idx / 64) as usize)
            .is_some_and(|w| w >> (idx % 64) & 1 == 1)
    }

    /// Marks `id` as seen; returns whether it was new.
    pub(super) fn insert(&mut self, id: MsgId, low: MsgId) -> bool {
        if self.contains(id, low) {
            return false;
        }
        while self.base + 64 <= low && !self.words.is_empty() {
            self.words.pop_front();
            self.base += 64;
        }
        if self.words.is_empty() {
            self.base = low & !63;
        }
        let idx = id - self.base;
        let word = (idx / 64) as usize;
        if self.words.len() <= word {
            self.words.resize(word + 1, 0);
        }
        self.words[word] |= 1 << (idx % 64);
        true
    }

    fn heap_bytes(&self) -> usize {
        self.words.capacity() * size_of::<u64>()
    }
}

/// A peer's mesh of one subscribed topic.
#[derive(Debug)]
pub(super) struct Mesh {
    pub(super) topic: TopicIdx,
    /// Sorted.
    pub(super) peers: Vec<PeerIdx>,
}

/// Peers a peer publishes to on a topic it is not subscribed to.
#[derive(Debug)]
pub(super) struct Fanout {
    pub(super) topic: TopicIdx,
    /// Sorted.
    pub(super) peers: Vec<PeerIdx>,
    pub(super) last_pub_us: u64,
}

/// No GRAFT toward (or from) `peer` on `topic` before `until_us`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Backoff {
    pub(super) topic: TopicIdx,
    pub(super) peer: PeerIdx,
    pub(super) until_us: u64,
}

/// Everything one peer keeps.
#[derive(Debug, Default)]
pub(super) struct Peer {
    pub(super) up: bool,
    /// One entry per subscribed topic, sorted by topic.
    pub(super) meshes: Vec<Mesh>,
    /// Sorted by topic.
    pub(super) fanout: Vec<Fanout>,
    pub(super) seen: Seen,
    /// Message cache: heartbeat windows, newest first, each sorted by id.
    pub(super) mcache: VecDeque<Vec<MsgId>>,
    /// Ids asked for with IWANT and not arrived: (id, until when not to ask again), sorted by id.
    pub(super) promised: Vec<(MsgId, u64)>,
    pub(super) backoff: Vec<Backoff>,
    /// Mesh peers that crashed since the last heartbeat (their connection closed).
    pub(super) lost: Vec<PeerIdx>,
}

impl Peer {
    pub(super) fn up() -> Peer {
        Peer {
            up: true,
            ..Peer::default()
        }
    }

    pub(super) fn mesh(&self, topic: TopicIdx) -> Option<&Mesh> {
        self.meshes
            .binary_search_by_key(&topic, |m| m.topic)
            .ok()
            .map(|i| &self.meshes[i])
    }

    pub(super) fn mesh_mut(&mut self, topic: TopicIdx) -> Option<&mut Mesh> {
        self.meshes
            .binary_search_by_key(&topic, |m| m.topic)
            .ok()
            .map(|i| &mut self.meshes[i])
    }

    /// Whether a backoff toward `peer` on `topic` is running at `now_us`, extended by `slack_us`.
    pub(super) fn in_backoff(&self, topic: TopicIdx, peer: PeerIdx, now_us: u64, slack_us: u64) -> bool {
        self.backoff
            .iter()
            .any(|b| b.topic == topic && b.peer == peer && now_us < b.until_us.saturating_add(slack_us))
    }

    /// Starts (or extends) a backoff toward `peer` on `topic`.
    pub(super) fn add_backoff(&mut self, topic: TopicIdx, peer: PeerIdx, until_us: u64) {
        match self.backoff.iter_mut().find(|b| b.topic == topic && b.peer == peer) {
            Some(b) => b.until_us = b.until_us.max(until_us),
            None => self.backoff.push(Backoff { topic, peer, until_us }),
        }
    }

    /// Puts `id` in the newest message-cache window.
    pub(super) fn cache(&mut self, id: MsgId, history_length: usize) {
        if self.mcache.is_empty() {
            self.mcache.push_front(Vec::new());
            while self.mcache.len() < history_length {
                self.mcache.push_back(Vec::new());
            }
        }
        let window = &mut self.mcache[0];
        let at = window.partition_point(|&x| x < id);
        if window.get(at) != Some(&id) {
            window.insert(at, id);
        }
    }

    /// Whether `id` is in any message-cache window.
    pub(super) fn cached(&self, id: MsgId) -> bool {
        self.mcache.iter().any(|w| w.binary_search(&id).is_ok())
    }

    /// Starts a new message-cache window, dropping the oldest.
    pub(super) fn shift_cache(&mut self, history_length: usize) {
        if self.mcache.iter().all(Vec::is_empty) {
            // Nothing cached: keep no allocation at all.
            self.mcache = VecDeque::new();
            return;
        }
        let mut oldest = if self.mcache.len() >= history_length {
            self.mcache.pop_back().unwrap_or_default()
        } else {
            Vec::new()
        };
        oldest.clear();
        self.mcache.push_front(oldest);
    }

    /// Approximate heap bytes owned by this peer.
    pub(super) fn heap_bytes(&self) -> usize {
        let meshes: usize = self
            .meshes
            .iter()
            .map(|m| m.peers.capacity() * size_of::<PeerIdx>())
            .sum();
        let fanout: usize = self
            .fanout
            .iter()
            .map(|f| f.peers.capacity() * size_of::<PeerIdx>())
            .sum();
        let mcache: usize = self.mcache.iter().map(|w| w.capacity() * size_of::<MsgId>()).sum();
        self.meshes.capacity() * size_of::<Mesh>()
            + meshes
            + self.fanout.capacity() * size_of::<Fanout>()
            + fanout
            + self.seen.heap_bytes()
            + self.mcache.capacity() * size_of::<Vec<MsgId>>()
            + mcache
            + self.promised.capacity() * size_of::<(MsgId, u64)>()
            + self.backoff.capacity() * size_of::<Backoff>()
            + self.lost.capacity() * size_of::<PeerIdx>()
    }
}

/// A uniform draw in `0..n` (`n > 0`) from one rng output.
pub(super) fn below(rng: &mut impl FnMut() -> u64, n: usize) -> usize {
    ((u128::from(rng()) * n as u128) >> 64) as usize
}

/// Up to `k` distinct peers of `pool` accepted by `ok`, chosen uniformly at random (all accepted
/// ones when there are at most `k`). The result depends only on the inputs and the rng outputs.
pub(super) fn sample(
    pool: &[PeerIdx],
    k: usize,
    ok: impl Fn(PeerIdx) -> bool,
    rng: &mut impl FnMut() -> u64,
) -> Vec<PeerIdx> {
    if k == 0 || pool.is_empty() {
        return Vec::new();
    }
    if pool.len() >= 8 * k + 64 {
        // Large pool: rejection sampling, no copy of the pool.
        let mut out = Vec::with_capacity(k);
        for _ in 0..16 * k + 64 {
            let p = pool[below(rng, pool.len())];
            if ok(p) && !out.contains(&p) {
                out.push(p);
                if out.len() == k {
                    return out;
                }
            }
        }
        // Too many rejections (most of the pool is excluded): fall back to the exact method.
    }
    let mut cands: Vec<PeerIdx> = pool.iter().copied().filter(|&p| ok(p)).collect();
    let k = k.min(cands.len());
    for i in 0..k {
        let j = i + below(rng, cands.len() - i);
        cands.swap(i, j);
    }
    cands.truncate(k);
    cands
}

/// Shuffles `v` in place (Fisher-Yates).
pub(super) fn shuffle<T>(v: &mut [T], rng: &mut impl FnMut() -> u64) {
    for i in (1..v.len()).rev() {
        let j = below(rng, i + 1);
        v.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gossip_seen_window_slides() {
        let mut s = Seen::default();
        assert!(s.insert(5, 0));
        assert!(!s.insert(5, 0));
        assert!(s.contains(5, 0) && !s.contains(6, 0));
        assert!(s.insert(200, 0));
        // The expiry bound moves past the first word: it is dropped, its ids count as seen.
        assert!(s.insert(201, 130));
        assert!(s.contains(6, 130) && s.contains(129, 130) && !s.contains(130, 130) && s.contains(200, 130));
        assert!(s.words.len() <= 2);
        // A bound past everything empties the window.
        assert!(s.insert(10_000, 9_990));
        assert_eq!(s.words.len(), 1);
    }

    #[test]
    fn gossip_sample_is_distinct_and_bounded() {
        let mut x = 1u64;
        let mut rng = move || {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            x
        };
        let pool: Vec<PeerIdx> = (0..1000).collect();
        let s = sample(&pool, 10, |p| p % 2 == 0, &mut rng);
        assert_eq!(s.len(), 10);
        assert!(s.iter().all(|p| p % 2 == 0));
        let mut d = s.clone();
        d.sort_unstable();
        d.dedup();
        assert_eq!(d.len(), 10);
        let small = sample(&pool[..20], 50, |p| p != 3, &mut rng);
        assert_eq!(small.len(), 19);
    }
}
