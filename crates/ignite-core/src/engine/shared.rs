//! Check results shared by the engines of one process.
//!
//! Verifying a signature and decrypting a sealed message are deterministic: every engine
//! that checks the same bytes gets the same answer. A process running many engines (a
//! simulator) can hand them one [`SharedChecks`] so that each unique message is decrypted
//! once and each unique signature verified once, whichever engine meets it first; the
//! others reuse the result and count it in [`Stats::signatures_shared`](super::Stats) and
//! [`Stats::opens_shared`](super::Stats). Only successes are shared: a failure is
//! re-checked by every engine. A platform host running one engine per process has no use
//! for it.
//!
//! The engines also share one copy of what each of them stores identically from a unique
//! signed message: each signed delta, each member's latest presence, each
//! manifest and each fetched code blob. In a simulator every engine holds every node's
//! deltas and presence and every manifest and installed blob, and the copies would
//! otherwise dominate memory. A presence's statement hash (which lists up to
//! `max_presence_installed` installed keys) is computed by the first engine storing it;
//! the others compare the presence they receive with that copy in full instead.
//!
//! The entries of the most recent signed deltas ([`DECODED_CAP`]) are kept decoded, so
//! the engines that receive a delta after the first do not decode it again; each engine
//! still checks them against its own limits. The lane merge of each of the most recent
//! deltas ([`TRANSITIONS_CAP`]) is kept too: an engine holding the lane in exactly the
//! state the first engine merged it into takes the resulting state instead of merging
//! (see [`transition`](crate::profile::transition)).

use crate::code::{Manifest, Presence, Signed};
use crate::crypto::{SeenCache, SigBytes};
use crate::profile::StoredDelta;
use crate::profile::counter::CounterKey;
use crate::profile::lane::Cell;
use crate::profile::transition::Transition;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};

/// Decoded delta entries kept for the engines that receive the same delta later.
pub(crate) const DECODED_CAP: usize = 1024;

/// Lane merges kept for the engines that apply the same delta later.
pub(crate) const TRANSITIONS_CAP: usize = 1024;

/// Decoded entries of one signed delta, shared by the engines that apply it.
pub(crate) type Entries = Arc<[(CounterKey, u64)]>;

/// The values of the last `cap` keys inserted, oldest dropped first.
struct Recent<V> {
    map: BTreeMap<[u8; 32], V>,
    order: VecDeque<[u8; 32]>,
    cap: usize,
}

impl<V: Clone> Recent<V> {
    fn new(cap: usize) -> Recent<V> {
        Recent {
            map: BTreeMap::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    fn get(&self, key: &[u8; 32]) -> Option<V> {
        self.map.get(key).cloned()
    }

    fn insert(&mut self, key: [u8; 32], value: V) {
        if self.map.insert(key, value).is_none() {
            self.order.push_back(key);
            while self.order.len() > self.cap {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }
}

/// One shared copy per key of a value engines store, held only while some engine holds it.
struct Interner<T: ?Sized, K = [u8; 32]> {
    map: BTreeMap<K, Weak<T>>,
    /// Copies still alive at the last sweep of dead ones.
    live: usize,
}

impl<T: ?Sized, K: Ord + Copy> Interner<T, K> {
    fn new() -> Interner<T, K> {
        Interner {
            map: BTreeMap::new(),
            live: 0,
        }
    }

    /// The copy stored under `key` if `same` accepts it, or `make()` stored there. Dead
    /// entries are swept when the table has doubled since the last sweep.
    fn intern_if(&mut self, key: &K, same: impl FnOnce(&T) -> bool, make: impl FnOnce() -> Arc<T>) -> Arc<T> {
        if let Some(a) = self.map.get(key).and_then(Weak::upgrade)
            && same(&a)
        {
            return a;
        }
        let a = make();
        self.map.insert(*key, Arc::downgrade(&a));
        if self.map.len() > 2 * self.live.max(1024) {
            self.map.retain(|_, w| w.strong_count() > 0);
            self.live = self.map.len();
        }
        a
    }

    /// The copy stored under `key` (a hash of its content), or `make()` stored there.
    fn intern(&mut self, key: &K, make: impl FnOnce() -> Arc<T>) -> Arc<T> {
        self.intern_if(key, |_| true, make)
    }

    /// (live copies, references engines hold to them).
    fn count(&self) -> (usize, usize) {
        self.map
            .values()
            .map(Weak::strong_count)
            .filter(|n| *n > 0)
            .fold((0, 0), |(c, r), n| (c + 1, r + n))
    }
}

struct Inner {
    verified: SeenCache,
    /// Plaintexts of recently opened messages.
    opened: Recent<Arc<[u8]>>,
    verifications: u64,
    opens: u64,
    /// Stored signed deltas by delta hash.
    deltas: Interner<StoredDelta>,
    /// Members' presences by statement hash.
    presences: Interner<Signed<Presence>>,
    /// The statement hash of each presence in `presences`, by signature: the engines that
    /// receive a presence after the first compare it with the stored one instead of
    /// hashing it again.
    presence_hashes: BTreeMap<SigBytes, ([u8; 32], Weak<Signed<Presence>>)>,
    /// Entries of `presence_hashes` alive at the last sweep of dead ones.
    presence_hashes_live: usize,
    /// Fetched code blobs by content hash.
    blobs: Interner<[u8]>,
    /// Manifests by statement hash.
    manifests: Interner<Signed<Manifest>>,
    /// Lane values by a hint of lane and state, compared in full before sharing.
    cells: Interner<Vec<Cell>, u64>,
    /// Decoded entries of recent deltas by delta hash.
    decoded: Recent<Entries>,
    /// Deltas decoded, and decodings reused.
    decodes: (u64, u64),
    /// Lane merges of recent deltas by delta hash, as the first engine made them.
    transitions: Recent<Arc<Transition>>,
    /// Merges recorded, and merges reused.
    merges: (u64, u64),
}

/// Signature checks and decryptions that succeeded, shared by engines (see the module
/// documentation). Cloning shares the same cache.
#[derive(Clone)]
pub struct SharedChecks(Arc<Mutex<Inner>>);

impl std::fmt::Debug for SharedChecks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (verifications, opens) = self.work();
        f.debug_struct("SharedChecks")
            .field("verifications", &verifications)
            .field("opens", &opens)
            .finish()
    }
}

impl SharedChecks {
    /// A cache remembering up to `cap` verified signatures and `cap` plaintexts.
    pub fn new(cap: usize) -> SharedChecks {
        SharedChecks(Arc::new(Mutex::new(Inner {
            verified: SeenCache::new(cap),
            opened: Recent::new(cap),
            verifications: 0,
            opens: 0,
            deltas: Interner::new(),
            presences: Interner::new(),
            presence_hashes: BTreeMap::new(),
            presence_hashes_live: 0,
            blobs: Interner::new(),
            manifests: Interner::new(),
            cells: Interner::new(),
            decoded: Recent::new(DECODED_CAP),
            decodes: (0, 0),
            transitions: Recent::new(TRANSITIONS_CAP),
            merges: (0, 0),
        })))
    }

    /// The entries of the delta identified by `hash` (a hash covering its encoded
    /// entries): decoded by another engine, or by `decode` now. A decoding error is not
    /// kept.
    pub(crate) fn decoded<E>(
        &self,
        hash: &[u8; 32],
        decode: impl FnOnce() -> Result<Vec<(CounterKey, u64)>, E>,
    ) -> Result<Entries, E> {
        {
            let mut g = self.lock();
            if let Some(e) = g.decoded.get(hash) {
                g.decodes.1 += 1;
                return Ok(e);
            }
        }
        let entries: Entries = decode()?.into();
        let mut g = self.lock();
        g.decodes.0 += 1;
        g.decoded.insert(*hash, entries.clone());
        Ok(entries)
    }

    /// The merge of the delta identified by `delta` (its delta hash) the first engine to
    /// apply it recorded, if still kept.
    pub(crate) fn transition(&self, delta: &[u8; 32]) -> Option<Arc<Transition>> {
        self.lock().transitions.get(delta)
    }

    /// Records a merge unless one of the same delta is kept already.
    pub(crate) fn record_transition(&self, t: Transition) {
        let mut g = self.lock();
        if g.transitions.get(&t.context.delta).is_none() {
            g.merges.0 += 1;
            let key = t.context.delta;
            g.transitions.insert(key, Arc::new(t));
        }
    }

    /// Counts a recorded merge an engine took instead of merging.
    pub(crate) fn transition_reused(&self) {
        self.lock().merges.1 += 1;
    }

    /// Lane merges recorded by the engines sharing this cache, and merges reused.
    pub fn merges(&self) -> (u64, u64) {
        self.lock().merges
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Delta entries decoded by the engines sharing this cache, and decodings reused.
    pub fn decodes(&self) -> (u64, u64) {
        self.lock().decodes
    }

    /// Whether the signature identified by `hash` (a hash covering key, message and
    /// signature) was verified by some engine.
    pub(crate) fn is_verified(&self, hash: &[u8; 32]) -> bool {
        self.lock().verified.contains(hash)
    }

    /// Records a successful verification actually performed.
    pub(crate) fn verified(&self, hash: [u8; 32]) {
        let mut g = self.lock();
        g.verifications += 1;
        g.verified.insert(hash);
    }

    /// The plaintext of the sealed message identified by `key`, if an engine opened it.
    pub(crate) fn opened(&self, key: &[u8; 32]) -> Option<Arc<[u8]>> {
        self.lock().opened.get(key)
    }

    /// Records a successful decryption actually performed; returns the shared plaintext.
    pub(crate) fn open_done(&self, key: [u8; 32], plain: Vec<u8>) -> Arc<[u8]> {
        let plain: Arc<[u8]> = plain.into();
        let mut g = self.lock();
        g.opens += 1;
        g.opened.insert(key, plain.clone());
        plain
    }

    /// The one shared copy of the signed delta identified by `hash` (a hash covering
    /// everything signed and the signature, so equal hashes mean equal deltas): the copy
    /// another engine stored, or `make()`.
    pub(crate) fn intern_delta(&self, hash: &[u8; 32], make: impl FnOnce() -> StoredDelta) -> Arc<StoredDelta> {
        self.lock().deltas.intern(hash, || Arc::new(make()))
    }

    /// The one shared copy of the signed presence identified by `hash` (its statement
    /// hash): the copy another engine stored, or `p`.
    pub(crate) fn intern_presence(&self, hash: &[u8; 32], p: Signed<Presence>) -> Arc<Signed<Presence>> {
        let mut g = self.lock();
        let a = g.presences.intern(hash, || Arc::new(p));
        g.presence_hashes.insert(a.signature, (*hash, Arc::downgrade(&a)));
        if g.presence_hashes.len() > 2 * g.presence_hashes_live.max(1024) {
            g.presence_hashes.retain(|_, (_, w)| w.strong_count() > 0);
            g.presence_hashes_live = g.presence_hashes.len();
        }
        a
    }

    /// The statement hash of `p` if an engine stored an equal presence (compared in full,
    /// so a forged statement under a copied signature never gets the stored one's hash).
    pub(crate) fn presence_hash(&self, p: &Signed<Presence>) -> Option<[u8; 32]> {
        let g = self.lock();
        let (hash, stored) = g.presence_hashes.get(&p.signature)?;
        let stored = stored.upgrade()?;
        (*stored == *p).then_some(*hash)
    }

    /// The one shared copy of the signed manifest identified by `hash` (its statement
    /// hash): the copy another engine stored, or `m`.
    pub(crate) fn intern_manifest(&self, hash: &[u8; 32], m: Signed<Manifest>) -> Arc<Signed<Manifest>> {
        self.lock().manifests.intern(hash, || Arc::new(m))
    }

    /// The one shared copy of a fetched blob whose bytes were checked against its content
    /// hash `hash`: the copy another engine fetched, or `bytes`.
    pub(crate) fn intern_blob(&self, hash: &[u8; 32], bytes: Vec<u8>) -> Arc<[u8]> {
        self.lock().blobs.intern(hash, || bytes.into())
    }

    /// The copy of lane values equal to `cells` stored under `hint` (lane and state), or
    /// `cells` stored there.
    pub(crate) fn intern_cells(&self, hint: u64, cells: Arc<Vec<Cell>>) -> Arc<Vec<Cell>> {
        self.lock()
            .cells
            .intern_if(&hint, |held| held == cells.as_slice(), || cells.clone())
    }

    /// Shared copies alive now: (distinct copies, references engines hold to them), for
    /// signed deltas, presences, fetched blobs, manifests and lane values. Without sharing,
    /// every reference would be a copy.
    pub fn interned(&self) -> [(usize, usize); 5] {
        let g = self.lock();
        [
            g.deltas.count(),
            g.presences.count(),
            g.blobs.count(),
            g.manifests.count(),
            g.cells.count(),
        ]
    }

    /// Work actually performed through this cache: (signature verifications, decryptions).
    /// Every engine's [`Stats`](super::Stats) counts what it reused.
    pub fn work(&self) -> (u64, u64) {
        let g = self.lock();
        (g.verifications, g.opens)
    }
}

/// The key of a check result in [`SharedChecks`]: the kind of check and the hash of
/// everything it covers.
///
/// The keys never leave the process: a keyed hash under a fixed key separates them from
/// every other hash in one compression (a derived key would hash its context first).
pub(crate) fn shared_key(kind: &[u8], hash: &[u8; 32]) -> [u8; 32] {
    const KEY: &[u8; 32] = b"ignite v1 shared check key 00000";
    *blake3::Hasher::new_keyed(KEY)
        .update(kind)
        .update(hash)
        .finalize()
        .as_bytes()
}
