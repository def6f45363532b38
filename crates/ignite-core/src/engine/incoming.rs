//! A received message as a driver hands it to the engine.

use crate::ids::{Peer, TopicId};

/// One received message, for [`Engine::handle_messages`].
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// The peer it came from (the driver's handle).
    pub from: Peer,
    /// The gossip topic it arrived on, or `None` for a point-to-point message.
    pub topic: Option<&'a TopicId>,
    /// The bytes.
    pub bytes: &'a [u8],
    /// [`MessageHash::of`] these bytes, when the driver has it already; `None` lets the
    /// engine compute it. A driver that hands the same bytes to several engines (a
    /// simulator) hashes them once this way.
    pub hash: Option<MessageHash>,
}

impl<'a> Incoming<'a> {
    /// A message whose hash the engine computes itself.
    pub fn new(from: Peer, topic: Option<&'a TopicId>, bytes: &'a [u8]) -> Self {
        Self {
            from,
            topic,
            bytes,
            hash: None,
        }
    }
}

/// The blake3 hash of a message's bytes: what an engine remembers processed messages by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageHash([u8; 32]);

impl MessageHash {
    /// Hashes a message's bytes.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// The hash.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}
