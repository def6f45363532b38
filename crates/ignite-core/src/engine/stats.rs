//! What accepted messages did and counters about the engine's work.

use std::collections::BTreeMap;

/// What an accepted message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Accepted {
    /// Signed deltas that were new and applied.
    pub deltas_applied: usize,
    /// Signed deltas already held (no effect).
    pub deltas_duplicate: usize,
    /// The whole message had been processed before (no effect, not even decrypted).
    pub duplicate_message: bool,
}

/// Counters about the engine's work, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages handed to `handle_message`.
    pub messages_in: u64,
    /// Messages skipped as exact duplicates.
    pub duplicate_messages: u64,
    /// Rejections by kind.
    pub rejected: BTreeMap<&'static str, u64>,
    /// Deltas applied.
    pub deltas_applied: u64,
    /// Deltas already held.
    pub deltas_duplicate: u64,
    /// Signatures verified (certificates and deltas).
    pub signatures_verified: u64,
    /// Signature checks answered by [`Config::shared`](super::Config::shared) (verified by another engine).
    pub signatures_shared: u64,
    /// Decryptions answered by [`Config::shared`](super::Config::shared) (opened by another engine).
    pub opens_shared: u64,
    /// Messages published on topics.
    pub published_messages: u64,
    /// Bytes published on topics.
    pub published_bytes: u64,
    /// Counter entries published.
    pub published_entries: u64,
    /// Changed settled counters left for a later publication, summed over publication
    /// rounds (see [`Config`](super::Config), "Settled counters").
    pub deferred_entries: u64,
    /// Messages sent point to point.
    pub sent_messages: u64,
    /// Bytes sent point to point.
    pub sent_bytes: u64,
    /// Increments removed by caps.
    pub clamped_increments: u64,
    /// Anti-entropy messages and blob chunks ignored because they belong to no round this
    /// node opened or serves, or to no blob request it has outstanding with that peer (late,
    /// e.g. after the request timed out, or unsolicited).
    pub sync_ignored: u64,
    /// Code refusals by kind.
    pub refused: BTreeMap<&'static str, u64>,
    /// Thresholds reached by prediction before the signed counts reached them.
    pub predicted_thresholds: u64,
    /// Compile requests handed to the host (publish and attest).
    pub compiles_requested: u64,
    /// Presences announced.
    pub presences_published: u64,
    /// Compile claims published (including renewals and releases).
    pub claims_published: u64,
    /// Manifests signed and published.
    pub manifests_published: u64,
    /// Code installed.
    pub installs: u64,
    /// Code uninstalled.
    pub uninstalls: u64,
    /// Blobs fetched from peers.
    pub blobs_fetched: u64,
    /// Blob bytes served to peers.
    pub blob_bytes_served: u64,
}
