//! The bounded store of code blobs, content-addressed by blake3, and the state of one
//! chunked transfer.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

#[derive(Debug)]
struct Entry {
    bytes: Arc<[u8]>,
    used: u64,
    pinned: bool,
}

/// Code blobs by content hash, bounded by total bytes and count. When full, the least
/// recently used blob that is not pinned (installed here) is evicted; a blob that does not
/// fit even then is not stored.
#[derive(Debug)]
pub struct BlobStore {
    entries: BTreeMap<[u8; 32], Entry>,
    lru: BTreeMap<u64, [u8; 32]>,
    clock: u64,
    bytes: u64,
    max_bytes: u64,
    max_count: usize,
}

impl BlobStore {
    /// An empty store.
    pub fn new(max_bytes: u64, max_count: usize) -> BlobStore {
        BlobStore {
            entries: BTreeMap::new(),
            lru: BTreeMap::new(),
            clock: 0,
            bytes: 0,
            max_bytes,
            max_count,
        }
    }

    /// Stores a blob under its blake3 hash (computed here). Returns the hash, or `None` when
    /// it cannot fit without evicting pinned blobs.
    pub fn insert(&mut self, bytes: Arc<[u8]>) -> Option<[u8; 32]> {
        let hash = *blake3::hash(&bytes).as_bytes();
        if self.entries.contains_key(&hash) {
            self.touch(&hash);
            return Some(hash);
        }
        let size = bytes.len() as u64;
        if size > self.max_bytes {
            return None;
        }
        while self.bytes + size > self.max_bytes || self.entries.len() >= self.max_count {
            let victim = self.lru.values().copied().find(|h| !self.entries[h].pinned)?;
            self.remove(&victim);
        }
        self.clock += 1;
        self.lru.insert(self.clock, hash);
        self.bytes += size;
        self.entries.insert(
            hash,
            Entry {
                bytes,
                used: self.clock,
                pinned: false,
            },
        );
        Some(hash)
    }

    fn remove(&mut self, hash: &[u8; 32]) {
        if let Some(e) = self.entries.remove(hash) {
            self.lru.remove(&e.used);
            self.bytes -= e.bytes.len() as u64;
        }
    }

    fn touch(&mut self, hash: &[u8; 32]) {
        if let Some(e) = self.entries.get_mut(hash) {
            self.lru.remove(&e.used);
            self.clock += 1;
            e.used = self.clock;
            self.lru.insert(self.clock, *hash);
        }
    }

    /// The blob, marking it recently used.
    pub fn get(&mut self, hash: &[u8; 32]) -> Option<Arc<[u8]>> {
        self.touch(hash);
        self.entries.get(hash).map(|e| e.bytes.clone())
    }

    /// Whether the blob is held.
    pub fn contains(&self, hash: &[u8; 32]) -> bool {
        self.entries.contains_key(hash)
    }

    /// Pins exactly the blobs in `pinned` (installed code is never evicted). One walk over
    /// the store when `pinned` is in ascending order; otherwise a sorted copy is walked.
    pub fn set_pinned(&mut self, pinned: &[[u8; 32]]) {
        if !pinned.is_sorted() {
            let mut sorted = pinned.to_vec();
            sorted.sort_unstable();
            return self.set_pinned(&sorted);
        }
        let mut rest = pinned;
        for (h, e) in self.entries.iter_mut() {
            while let Some((first, tail)) = rest.split_first()
                && first < h
            {
                rest = tail;
            }
            e.pinned = rest.first() == Some(h);
        }
    }

    /// Total bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Blobs held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Why a chunk of a blob transfer was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    /// The sender announced another size than the manifest.
    Size,
    /// Not the chunk asked for, or of the wrong length.
    Framing,
    /// The assembled blob does not hash to the manifest's hash.
    Hash,
}

/// One blob being fetched chunk by chunk from one peer at a time.
#[derive(Debug)]
pub(crate) struct Transfer {
    pub(crate) size: u64,
    pub(crate) buf: Vec<u8>,
    pub(crate) next_chunk: u32,
    pub(crate) peer: Option<crate::ids::Peer>,
    pub(crate) tried: BTreeSet<crate::ids::Peer>,
    pub(crate) deadline: crate::ids::Timestamp,
    /// When the outstanding request was sent.
    pub(crate) sent_at: crate::ids::Timestamp,
    /// Id of the request outstanding (echoed by the answer; makes every request unique).
    pub(crate) request: u64,
    /// When every candidate failed: not retried before this time.
    pub(crate) failed_until: Option<crate::ids::Timestamp>,
    /// Rounds over the candidates that found no holder (sets the backoff).
    pub(crate) rounds: u32,
}

impl Transfer {
    pub(crate) fn new(size: u64, now: crate::ids::Timestamp) -> Transfer {
        Transfer {
            size,
            buf: Vec::new(),
            next_chunk: 0,
            peer: None,
            tried: BTreeSet::new(),
            deadline: now,
            sent_at: now,
            request: 0,
            failed_until: None,
            rounds: 0,
        }
    }

    /// Restarts from the first chunk (after a bad chunk or a peer change).
    pub(crate) fn restart(&mut self) {
        self.buf.clear();
        self.next_chunk = 0;
        self.peer = None;
    }

    /// Accepts chunk `index` of a blob announced as `size` bytes. Returns the whole blob
    /// once complete and hash-checked.
    pub(crate) fn accept(
        &mut self,
        hash: &[u8; 32],
        index: u32,
        size: u64,
        data: &[u8],
        chunk_bytes: usize,
    ) -> Result<Option<Vec<u8>>, ChunkError> {
        if size != self.size {
            return Err(ChunkError::Size);
        }
        let offset = u64::from(index) * chunk_bytes as u64;
        let expected = (self.size.saturating_sub(offset)).min(chunk_bytes as u64);
        if index != self.next_chunk || offset >= self.size.max(1) || data.len() as u64 != expected {
            return Err(ChunkError::Framing);
        }
        self.buf.extend_from_slice(data);
        self.next_chunk += 1;
        if (self.buf.len() as u64) < self.size {
            return Ok(None);
        }
        let blob = std::mem::take(&mut self.buf);
        if blake3::hash(&blob).as_bytes() != hash {
            self.restart();
            return Err(ChunkError::Hash);
        }
        Ok(Some(blob))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(n: usize, fill: u8) -> Arc<[u8]> {
        vec![fill; n].into()
    }

    #[test]
    fn evicts_least_recently_used_unpinned_and_respects_bounds() {
        let mut s = BlobStore::new(300, 10);
        let a = s.insert(blob(100, 1)).unwrap();
        let b = s.insert(blob(100, 2)).unwrap();
        let c = s.insert(blob(100, 3)).unwrap();
        s.get(&a); // a is now more recent than b
        s.set_pinned(&[c]);
        let d = s.insert(blob(100, 4)).unwrap();
        assert!(!s.contains(&b), "LRU unpinned victim");
        assert!(s.contains(&a) && s.contains(&c) && s.contains(&d));
        assert_eq!(s.bytes(), 300);
        // Pin everything: nothing fits any more, nothing is lost.
        s.set_pinned(&[d, a, c]);
        assert_eq!(s.insert(blob(10, 5)), None);
        assert_eq!(s.len(), 3);
        assert_eq!(s.insert(blob(301, 6)), None);
        // Count bound.
        let mut s = BlobStore::new(1 << 20, 2);
        s.insert(blob(1, 1));
        s.insert(blob(1, 2));
        s.insert(blob(1, 3));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn transfer_checks_framing_size_and_hash() {
        let data: Vec<u8> = (0..250u32).map(|i| i as u8).collect();
        let hash = *blake3::hash(&data).as_bytes();
        let mut t = Transfer::new(250, crate::ids::Timestamp(0));
        assert_eq!(t.accept(&hash, 0, 251, &data[..100], 100), Err(ChunkError::Size));
        assert_eq!(t.accept(&hash, 1, 250, &data[100..200], 100), Err(ChunkError::Framing));
        assert_eq!(t.accept(&hash, 0, 250, &data[..99], 100), Err(ChunkError::Framing));
        assert_eq!(t.accept(&hash, 0, 250, &data[..100], 100), Ok(None));
        assert_eq!(t.accept(&hash, 1, 250, &data[100..200], 100), Ok(None));
        assert_eq!(t.accept(&hash, 2, 250, &data[200..], 100), Ok(Some(data.clone())));
        // A wrong final hash restarts the transfer.
        let mut t = Transfer::new(250, crate::ids::Timestamp(0));
        let mut bad = data.clone();
        bad[0] ^= 1;
        t.accept(&hash, 0, 250, &bad[..100], 100).unwrap();
        t.accept(&hash, 1, 250, &bad[100..200], 100).unwrap();
        assert_eq!(t.accept(&hash, 2, 250, &bad[200..], 100), Err(ChunkError::Hash));
        assert_eq!(t.next_chunk, 0);
    }
}
