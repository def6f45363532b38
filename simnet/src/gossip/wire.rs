//! [`Wire`]: the gossipsub RPCs the model exchanges, and their approximate encoded sizes.

use super::{MsgId, TopicIdx};

/// Encoded size assumed for a peer id: an Ed25519 `PeerId` (identity multihash, 2 + 36 bytes).
pub const PEER_ID_BYTES: u64 = 38;
/// Encoded size assumed for a message id: rust-libp2p's default `message_id_fn`, the base58 peer
/// id (52 characters) followed by the decimal sequence number (19 digits, a Unix time in ns).
pub const MSG_ID_BYTES: u64 = 71;
/// Encoded size assumed for a topic string (model assumption).
pub const TOPIC_BYTES: u64 = 32;
/// Size of a message signature (Ed25519).
pub const SIGNATURE_BYTES: u64 = 64;
/// Bytes reserved for the length of a message's `data` field (tag and varint length; the payload
/// itself is added by the caller).
const DATA_HEADER_BYTES: u64 = 4;
/// Backoff the model's PRUNE announces (60 s, in seconds as on the wire).
const PRUNE_BACKOFF_S: u64 = 60;

/// One gossipsub RPC between two peers. Ids are the simulator's dense message ids; bytes stay
/// with the simulator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wire {
    /// A full message (eager push, forward, or answer to IWANT).
    Publish {
        /// Topic of the message.
        topic: TopicIdx,
        /// The message.
        id: MsgId,
    },
    /// "I have these recent messages" (lazy push, sent at heartbeats to non-mesh peers).
    IHave {
        /// Topic of the advertised messages.
        topic: TopicIdx,
        /// Advertised ids, at most `max_ihave_length`.
        ids: Vec<MsgId>,
    },
    /// "Send me these messages" (answer to IHAVE, for ids not seen yet).
    IWant {
        /// Requested ids.
        ids: Vec<MsgId>,
    },
    /// "Add me to your mesh of this topic".
    Graft {
        /// Topic of the mesh.
        topic: TopicIdx,
    },
    /// "I removed you from my mesh of this topic"; the receiver removes the sender too.
    Prune {
        /// Topic of the mesh.
        topic: TopicIdx,
    },
}

impl Wire {
    /// Approximate protobuf size of this RPC on the stream (length prefix, `RPC` envelope and the
    /// control or message fields), following gossipsub's `rpc.proto`. For [`Wire::Publish`] it
    /// covers `from`, `seqno`, `topic`, `signature` and the `data` header; the caller adds the
    /// payload size.
    pub fn control_bytes(&self) -> u64 {
        match self {
            Wire::Publish { .. } => {
                let message = field(PEER_ID_BYTES) + field(8) + field(TOPIC_BYTES) + field(SIGNATURE_BYTES);
                framed(field(message + DATA_HEADER_BYTES))
            }
            Wire::IHave { ids, .. } => control(field(TOPIC_BYTES) + ids.len() as u64 * field(MSG_ID_BYTES)),
            Wire::IWant { ids } => control(ids.len() as u64 * field(MSG_ID_BYTES)),
            Wire::Graft { .. } => control(field(TOPIC_BYTES)),
            Wire::Prune { .. } => control(field(TOPIC_BYTES) + 1 + varint_len(PRUNE_BACKOFF_S)),
        }
    }

    /// Whether this is a [`Wire::Publish`] (the caller adds the payload to its size).
    pub fn is_publish(&self) -> bool {
        matches!(self, Wire::Publish { .. })
    }
}

/// Bytes of a protobuf varint.
fn varint_len(mut v: u64) -> u64 {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// A length-delimited protobuf field with a one-byte tag.
fn field(len: u64) -> u64 {
    1 + varint_len(len) + len
}

/// An `RPC` whose body is `body` bytes, behind the stream's varint length prefix.
fn framed(body: u64) -> u64 {
    varint_len(body) + body
}

/// An `RPC { control: ControlMessage { <entry>: body } }`, framed.
fn control(entry_body: u64) -> u64 {
    framed(field(field(entry_body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gossip_wire_sizes_are_plausible() {
        let publish = Wire::Publish { topic: 0, id: 0 }.control_bytes();
        assert!((120..200).contains(&publish), "{publish}");
        let graft = Wire::Graft { topic: 0 }.control_bytes();
        assert!((36..50).contains(&graft), "{graft}");
        let one = Wire::IHave {
            topic: 0,
            ids: vec![1; 10],
        }
        .control_bytes();
        let two = Wire::IHave {
            topic: 0,
            ids: vec![1; 11],
        }
        .control_bytes();
        assert_eq!(two - one, MSG_ID_BYTES + 2);
        assert!(Wire::Prune { topic: 0 }.control_bytes() > graft);
        assert!(Wire::IWant { ids: vec![1; 100] }.control_bytes() > 7_000);
    }
}
